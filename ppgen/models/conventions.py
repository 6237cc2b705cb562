"""Backend-free conventions every ppgen model follows on both backends, written once in numpy.

Both backends build the same networks (:func:`check_mlp`) from the same seeds
(:func:`spawn_seeds`), offer the same observation models with the same Gaussian scale floor
(:func:`check_likelihood`, ``MIN_SCALE``), and read and write their weights as the same
dictionaries of numpy arrays (:func:`check_weights`), so weights copy one to one between a
Pyro model and its NumPyro twin.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ppgen.errors import CheckpointError, ConfigError

__all__ = [
    "ACTIVATION_NAMES",
    "LIKELIHOODS",
    "MIN_SCALE",
    "POSTERIOR_FLOWS",
    "PRIOR_FLOWS",
    "UNIT_SCALE_RAW",
    "check_flow_vae",
    "check_length",
    "check_likelihood",
    "check_mlp",
    "check_weights",
    "spawn_seeds",
]

ACTIVATION_NAMES = ("elu", "relu", "softplus", "tanh")  # each backend's MLP has these
LIKELIHOODS = ("bernoulli", "gaussian")
# Floor on every predicted standard deviation, ``softplus(pre) + MIN_SCALE``: keeps the
# log-densities finite however negative the network's pre-activation gets.
MIN_SCALE = 1e-4
# softplus(0.5413) + MIN_SCALE = 1.0000: a learned Gaussian scale starts at unit noise.
UNIT_SCALE_RAW = 0.5413
# A VAE's flow posterior (sampled in one pass: IAF, planar, spline IAF) and flow prior
# (scored in one pass: MAF, RealNVP, spline MAF); "none" is the plain Gaussian.
POSTERIOR_FLOWS = ("none", "iaf", "planar", "nsf")
PRIOR_FLOWS = ("none", "maf", "realnvp", "nsf")


def spawn_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent network seeds derived from one model seed.

    Numpy's ``SeedSequence.spawn`` (the recommended way to derive independent streams), so
    a model's networks never share a stream and the seeds are the same on both backends.

    Args:
        seed: The model's seed (a non-negative integer).
        n: How many seeds, one per network.

    Returns:
        ``n`` integers in ``[0, 2**32)``.
    """
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def check_mlp(sizes: Sequence[int], activation: str) -> list[int]:
    """Check an MLP's layer widths and activation; return the widths as ints.

    Args:
        sizes: Layer widths ``(in, hidden..., out)``.
        activation: One of :data:`ACTIVATION_NAMES`.

    Raises:
        ConfigError: Fewer than two widths, a width below 1, or an unknown activation.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(
            f"MLP sizes must be at least (in, out) with positive widths, got {tuple(sizes)}"
        )
    if activation not in ACTIVATION_NAMES:
        raise ConfigError(f"unknown activation {activation!r}; choose one of {ACTIVATION_NAMES}")
    return sizes


def check_likelihood(x_dim: int, likelihood: str, scale: float | str) -> float | None:
    """Check a model's observation options; return its fixed Gaussian scale, if any.

    Args:
        x_dim: Features per example, a positive integer.
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        scale: For a Gaussian likelihood, a positive number (a fixed scale) or
            ``"learned"`` (a per-feature parameter); ignored for a Bernoulli one.

    Returns:
        The fixed scale as a float, or ``None`` (a Bernoulli, or a learned scale).

    Raises:
        ConfigError: An unknown likelihood, a non-positive ``x_dim`` or an invalid scale.
    """
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    if int(x_dim) < 1:
        raise ConfigError(f"x_dim must be a positive integer, got {x_dim!r}")
    if likelihood != "gaussian" or scale == "learned":
        return None
    if isinstance(scale, numbers.Real) and not isinstance(scale, bool) and scale > 0:
        return float(scale)
    raise ConfigError(f"scale must be 'learned' or a positive float, got {scale!r}")


def check_weights(expected: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Raise :class:`CheckpointError` unless ``given`` has ``expected``'s keys and shapes.

    Args:
        expected: A model's own weights (arrays or tensors), by key.
        given: The weights to load (numpy arrays, tensors or JAX arrays), by the same keys.

    Raises:
        CheckpointError: Missing or unexpected keys, or a shape mismatch.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"weights do not fit this model: missing {missing}, unexpected {unexpected}; "
            "load weights saved from a model built with the same arguments"
        )
    for key, value in expected.items():
        want, got = tuple(np.shape(value)), tuple(np.shape(given[key]))
        if got != want:
            raise CheckpointError(
                f"weight {key!r} has shape {got}, this model needs {want}; load weights "
                "saved from a model built with the same arguments"
            )


def check_flow_vae(
    posterior_flow: str, prior_flow: str, flow_layers: int, flow_hidden: Sequence[int]
) -> tuple[int, tuple[int, ...]]:
    """Check a flow VAE's flows (:data:`POSTERIOR_FLOWS`, :data:`PRIOR_FLOWS`); return the
    number of layers and the conditioners' hidden widths as ints.

    Raises:
        ConfigError: An unknown flow name, fewer than one layer, or a width below 1.
    """
    if posterior_flow not in POSTERIOR_FLOWS:
        raise ConfigError(
            f"unknown posterior flow {posterior_flow!r}; choose one of {POSTERIOR_FLOWS}"
        )
    if prior_flow not in PRIOR_FLOWS:
        raise ConfigError(f"unknown prior flow {prior_flow!r}; choose one of {PRIOR_FLOWS}")
    if isinstance(flow_layers, bool) or not isinstance(flow_layers, numbers.Integral):
        raise ConfigError(f"flow_layers must be an integer >= 1, got {flow_layers!r}")
    if flow_layers < 1:
        raise ConfigError(
            f"flow_layers must be >= 1, got {flow_layers}; for no flow use "
            "posterior_flow='none' and prior_flow='none'"
        )
    hidden = tuple(int(h) for h in flow_hidden)
    if not hidden or min(hidden) < 1:
        raise ConfigError(f"flow_hidden must be positive widths, got {tuple(flow_hidden)}")
    return int(flow_layers), hidden


def check_length(length: Any) -> int:
    """Return a sequence length (the ``T`` of a sequence model's events) as an int.

    Raises:
        ConfigError: Not an integer >= 1 (a length of 0 drew an empty array, a negative one
            failed deep inside the backend).
    """
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1:
        raise ConfigError(f"the sequence length must be an integer >= 1, got {length!r}")
    return int(length)
