"""Per-datapoint importance weights and the importance-sampled marginal likelihood.

For a model ``p(x, z)`` and a guide ``q(z | x)`` the log weight of ``z ~ q`` is
``log w = log p(x, z) - log q(z | x)``; ``E_q[w] = p(x)``, so

    log p(x) ~= log (1/K) sum_k w_k,     z_k ~ q(z | x),

a stochastic lower bound that tightens as K grows (Burda et al. 2015, *Importance Weighted
Autoencoders*). Every function works on any Pyro model/guide pair whose per-datapoint sites
lie in a plate named ``"data"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyro import poutine
from tqdm.auto import tqdm

from ppgen.data.schedules import Minibatches, argument_names
from ppgen.errors import ConfigError, DataError, PPGenError
from ppgen.inference.checks import check_count, check_num_particles, datapoint_param_sizes
from ppgen.inference.pyro.particles import particle_terms, structure
from ppgen.inference.pyro.support import check_observed_support

__all__ = ["evaluate_log_likelihood", "log_marginal_likelihood", "log_weights", "to_tensor"]


def to_tensor(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` as a 2-D ``dtype`` tensor, never written to.

    A writable numpy array of the right dtype is shared, not copied (an epoch of MNIST is
    190 MB); other arrays are copied, so read-only ones (memory maps) are never exposed to
    torch.

    Raises:
        DataError: ``x`` is not a numeric 2-D array.
    """
    if not torch.is_tensor(x):
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"x must be a numeric array, got dtype {x.dtype}")
        want = torch.empty((), dtype=dtype).numpy().dtype
        if x.dtype != want or not x.flags.writeable:
            x = np.array(x, dtype=want)
        x = torch.from_numpy(x)
    if x.dim() != 2:
        raise DataError(
            f"x has shape {tuple(x.shape)}; pass a 2-D array (examples, features), "
            "e.g. x.reshape(len(x), -1)"
        )
    return x.to(dtype)


def log_weights(
    model: Callable, guide: Callable, *args: Any, num_particles: int = 1, **kwargs: Any
) -> torch.Tensor:
    """Per-datapoint log importance weights ``log p(x_i, z_k) - log q(z_k | x_i)``.

    The ``K`` particles ``z_k ~ q(z | x_i)`` are drawn at once in an outer
    ``pyro.plate("particles")`` at dim ``-(max_plate_nesting + 1)``; each site's log-density
    is summed over every plate but ``"particles"`` and ``"data"``, with the data plate's
    subsample scale divided out, so the weights are per datapoint whatever ``num_data`` is.
    Works for any Pyro model/guide pair. A guide conditioned on given latents
    (``poutine.condition(guide, data={"z": z})`` with ``z`` of shape ``(K, batch, ...)``)
    gives deterministic weights.

    Args:
        model: ``model(*args, **kwargs)`` with its latent and observed sites in the
            ``"data"`` plate (or with no plate at all: one datapoint).
        guide: ``guide(*args, **kwargs)`` sampling every latent site of the model.
        *args: Passed to model and guide (e.g. the minibatch ``x``).
        num_particles: ``K``; with 1 the pair runs as written, without the particle plate.
        **kwargs: Passed to model and guide (e.g. ``num_data``).

    Returns:
        Tensor of shape ``(num_particles, batch)``.

    Raises:
        ConfigError: ``num_particles`` is not a positive integer, a site lies outside the
            ``"data"`` plate, or a model latent the guide lacks.
    """
    num_particles = check_num_particles(num_particles)
    out = particle_terms(model, guide, args, kwargs, num_particles=num_particles)
    return sum(out.terms.values())


def log_marginal_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 5000,
    chunk_size: int = 500,
    **kwargs: Any,
) -> torch.Tensor:
    """Importance-sampled ``log p(x_i) ~= logmeanexp_k log w_{k,i}``, shape ``(batch,)``.

    The ``num_samples`` weights are drawn ``chunk_size`` at a time under ``torch.no_grad()``
    and folded into a running ``logsumexp``, so memory grows with ``chunk_size``, not
    ``num_samples``. Draws come from torch's global generator.

    Args:
        model: Model (see :func:`log_weights`).
        guide: Guide, the proposal.
        *args: Passed to model and guide.
        num_samples: ``K``; need not be a multiple of ``chunk_size``.
        chunk_size: Particles per chunk, each chunk one vectorised pass.
        **kwargs: Passed to model and guide.

    Raises:
        ConfigError: ``num_samples`` or ``chunk_size`` is not a positive integer.
    """
    num_samples = check_count("num_samples", num_samples)
    chunk_size = check_count("chunk_size", chunk_size)
    with torch.no_grad():
        info = structure(model, guide, args, kwargs)  # once, not once per chunk
        total, remaining = None, num_samples
        while remaining > 0:
            k = min(chunk_size, remaining)
            out = particle_terms(model, guide, args, kwargs, num_particles=k, info=info)
            lse = torch.logsumexp(sum(out.terms.values()), dim=0)  # (batch,)
            total = lse if total is None else torch.logaddexp(total, lse)
            remaining -= k
    return total - math.log(num_samples)


def evaluate_log_likelihood(
    model: Callable,
    guide: Callable,
    x: Any,
    *,
    num_samples: int = 5000,
    batch_size: int = 100,
    chunk_size: int = 500,
    progress: bool = False,
) -> np.ndarray:
    """:func:`log_marginal_likelihood` of every row of a dataset, ``batch_size`` rows at a time.

    Args:
        model: ``model(x)`` (e.g. a trained ppgen model's ``model``).
        guide: ``guide(x)``.
        x: Data of shape ``(N, features)``, numpy or torch, or several arrays with the same
            ``N`` as in training (a tuple, passed positionally, or a dict, by keyword). They
            follow the dtype of the pair's parameters (a ``.double()`` model gets float64).
        num_samples: Importance samples per datapoint.
        batch_size: Datapoints per call.
        chunk_size: Particles per chunk inside a call.
        progress: Show a tqdm bar over batches.

    Returns:
        ``log p(x_i)`` estimates in nats, float64 ``(N,)``.

    Raises:
        DataError: ``x`` is not numeric, empty, holds NaN/Inf, or a value lies outside the
            support of its likelihood (e.g. grey values under a Bernoulli).
        ConfigError: A count is not a positive integer, or the guide has one parameter per
            datapoint (``AutoNormal``) and ``x`` is not all its rows in one batch.
    """
    batch_size = check_count("batch_size", batch_size)
    arrays, names = Minibatches().batch(x, None)[0], argument_names(x)
    n = len(arrays[0])
    # x follows the parameters' dtype (integer data too, as the trainer casts it); the
    # other arrays keep integer labels.
    first = _split(_tensors(arrays, torch.get_default_dtype()), names, 0, 1)
    dtype, sizes = _probe(model, guide, *first)
    tensors = _tensors(arrays, dtype)
    if sizes and (sizes != {n} or batch_size < n):
        raise ConfigError(
            f"the guide has one parameter per datapoint (e.g. AutoNormal) for {sorted(sizes)} "
            f"rows; evaluate it on exactly those rows in one batch (batch_size >= {n}), or use "
            "an amortized guide"
        )
    out = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="log p(x)"):
        args, kwargs = _split(tensors, names, start, start + batch_size)
        try:
            lml = log_marginal_likelihood(
                model, guide, *args, num_samples=num_samples, chunk_size=chunk_size, **kwargs
            )
        except Exception as error:
            if isinstance(error, ValueError):  # e.g. torch's support validation: which value
                check_observed_support(model, args, kwargs)
            if sizes and not isinstance(error, PPGenError):
                raise ConfigError(_DATAPOINT_PLATE) from None
            raise
        if not torch.isfinite(lml).all():
            check_observed_support(model, args, kwargs)
        out.append(lml.double().cpu().numpy())
    return np.concatenate(out)


_DATAPOINT_PLATE = (
    "the guide has one parameter per datapoint (e.g. AutoNormal) and its 'data' plate was "
    "built for another batch layout (an autoguide keeps its first call's subsample size); "
    "evaluate it with Trainer.evaluate on its training data, or use an amortized guide"
)


def _tensors(arrays: tuple, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The arrays as tensors: the first (``x``) in ``dtype``, the others as
    :func:`_as_tensor` makes them."""
    return tuple(
        _as_tensor(a, dtype) if i else _as_tensor(a, dtype).to(dtype) for i, a in enumerate(arrays)
    )


def _as_tensor(a: Any, dtype: torch.dtype) -> torch.Tensor:
    """Labels (integers) stay integers; everything else in ``dtype``."""
    a = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return a if not a.is_floating_point() and a.dtype != torch.bool else a.to(dtype)


def _split(tensors: tuple, names: tuple[str, ...] | None, start: int, stop: int):
    """Rows ``start:stop`` as the pair's positional and keyword arguments."""
    rows = tuple(t[start:stop] for t in tensors)
    return (rows, {}) if names is None else ((), dict(zip(names, rows, strict=True)))


def _probe(model: Callable, guide: Callable, args: tuple, kwargs: dict):
    """The dtype of the pair's first float parameter (torch's default if none, or if the
    run fails first) and its per-datapoint parameters' plate sizes, from one param-only run
    of guide and model on a batch (no gradients, a fork of torch's generator)."""
    capture = poutine.trace(param_only=True)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]), poutine.block(), capture:
            guide(*args, **kwargs)
            model(*args, **kwargs)
    except Exception:  # noqa: BLE001 - the estimate reports the real error
        pass
    sites = list(capture.trace.nodes.values())
    dtype = next(
        (
            s["value"].dtype
            for s in sites
            if torch.is_tensor(s["value"]) and s["value"].is_floating_point()
        ),
        torch.get_default_dtype(),
    )
    return dtype, datapoint_param_sizes(sites)
