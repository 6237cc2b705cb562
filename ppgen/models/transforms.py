"""Backend-free pieces of the simple flow transforms, written once in numpy.

``ppgen.models.{pyro,numpyro}.transforms`` build planar and radial flows (Rezende & Mohamed
2015), permutations, an LU-parametrised linear map (the vector form of Glow's invertible 1x1
convolution, Kingma & Dhariwal 2018) and NICE's diagonal scaling (Dinh et al. 2014) from the
checks, permutations and seeded initial parameters here, so both backends start from the
same numbers.

Parameter names and shapes follow Pyro's classes (``pyro.distributions.transforms``):
planar ``bias (1,), u (D,), w (D,)``; radial ``x0 (D,), alpha_prime (1,), beta_prime (1,)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from ppgen.errors import ConfigError

__all__ = [
    "PLANAR_PARAMS",
    "RADIAL_PARAMS",
    "check_dim",
    "check_hidden",
    "check_permutation",
    "hypernet_init",
    "inverse_permutation",
    "lu_init",
    "param_sizes",
    "planar_init",
    "radial_init",
    "random_permutation",
    "reverse_permutation",
]

# The hypernetwork of a conditional planar / radial flow outputs these, in this order
# (Pyro's ConditionalPlanar / ConditionalRadial read ``nn(context)`` in the same order).
PLANAR_PARAMS = ("bias", "u", "w")
RADIAL_PARAMS = ("x0", "alpha_prime", "beta_prime")
# softplus(log(e - 1)) = 1: a planar u parallel to w with u.w = log(e - 1) has u_hat = 0.
_PLANAR_IDENTITY_ALPHA = math.log(math.e - 1.0)


def check_dim(dim: int, what: str = "dim") -> int:
    """``dim`` as an int, or a one-line :class:`ConfigError` unless it is a positive integer."""
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 1:
        raise ConfigError(f"{what} must be a positive integer, got {dim!r}")
    return int(dim)


def check_hidden(hidden: int | Sequence[int]) -> list[int]:
    """A hypernetwork's hidden widths as a list (an int is one hidden layer).

    Raises:
        ConfigError: A width that is not a positive integer.
    """
    widths = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
    return [check_dim(h, "hidden width") for h in widths]


def param_sizes(names: Sequence[str], dim: int) -> list[int]:
    """Sizes of planar/radial parameters in a hypernetwork's output: ``D`` for vectors, 1 else."""
    return [dim if name in ("u", "w", "x0") else 1 for name in names]


def reverse_permutation(dim: int) -> np.ndarray:
    """``[D-1, ..., 1, 0]``: the permutation placed between coupling layers in NICE/RealNVP.

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """
    return np.arange(check_dim(dim))[::-1].copy()


def random_permutation(dim: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of ``range(D)`` from numpy's generator seeded ``seed``
    (the same on both backends; Papamakarios et al. 2017 permute between MAF layers).

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """
    return np.random.default_rng(seed).permutation(check_dim(dim))


def check_permutation(permutation: Sequence[int] | np.ndarray) -> np.ndarray:
    """``permutation`` as an int64 array, or a one-line error.

    Raises:
        ConfigError: Not a one-dimensional rearrangement of ``0, ..., D-1`` (D >= 1).
    """
    perm = np.asarray(permutation)
    if (
        perm.ndim != 1
        or perm.size == 0
        or perm.dtype.kind not in "iu"
        or not np.array_equal(np.sort(perm), np.arange(perm.size))
    ):
        raise ConfigError(
            "a permutation must be a 1-D integer array holding each of 0, ..., D-1 once, "
            f"got {np.asarray(permutation).tolist()!r}"
        )
    return perm.astype(np.int64)


def inverse_permutation(permutation: np.ndarray) -> np.ndarray:
    """The permutation ``inv`` with ``x[perm][inv] = x``."""
    return np.argsort(permutation)


def planar_init(dim: int, seed: int) -> dict[str, np.ndarray]:
    """Initial planar parameters that make the flow the identity.

    ``w`` is drawn uniform on ``[-1/sqrt(D), 1/sqrt(D)]`` (Pyro's range), ``b = 0`` and
    ``u = log(e - 1) w / |w|^2``, so that Pyro's invertibility reparametrisation
    ``u_hat = u + (softplus(u.w) - 1 - u.w) w / |w|^2`` is exactly zero: a fresh planar
    layer is ``y = x`` but every parameter still receives gradients.
    """
    dim = check_dim(dim, "input_dim")
    bound = 1.0 / math.sqrt(dim)
    w = np.random.default_rng(seed).uniform(-bound, bound, dim)
    u = _PLANAR_IDENTITY_ALPHA * w / np.sum(w**2)
    return {"bias": np.zeros(1), "u": u, "w": w}


def radial_init(dim: int, seed: int) -> dict[str, np.ndarray]:
    """Initial radial parameters that make the flow the identity.

    ``x0`` and ``alpha_prime`` are uniform on ``[-1/sqrt(D), 1/sqrt(D)]`` (Pyro's range);
    ``beta_prime = alpha_prime`` gives ``beta = -softplus(a') + softplus(b') = 0``.
    """
    dim = check_dim(dim, "input_dim")
    bound = 1.0 / math.sqrt(dim)
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(-bound, bound, dim)
    alpha_prime = rng.uniform(-bound, bound, 1)
    return {"x0": x0, "alpha_prime": alpha_prime, "beta_prime": alpha_prime.copy()}


def lu_init(dim: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Glow's initialisation of an LU-parametrised linear map: a random rotation, decomposed.

    ``W = P L U`` with ``W`` a random orthogonal matrix (QR of a seeded Gaussian matrix), ``P``
    a permutation, ``L`` unit lower triangular and ``U`` upper triangular with diagonal
    ``sign * exp(log_diag)`` (Kingma & Dhariwal 2018, section 3.2).

    Returns:
        ``(rows, sign, params)``: ``P @ M = M[rows]``; ``sign`` (D,) of ``diag U`` (fixed);
        ``params`` the trainable ``lower (D, D)`` (strictly lower part used), ``upper (D, D)``
        (strictly upper part used) and ``log_diag (D,)``.
    """
    dim = check_dim(dim)
    w, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))
    p, lower, upper = scipy.linalg.lu(w)
    diag = np.diag(upper)
    params = {
        "lower": np.tril(lower, -1),
        "upper": np.triu(upper, 1),
        "log_diag": np.log(np.abs(diag)),
    }
    return np.argmax(p, axis=1), np.sign(diag), params


def hypernet_init(sizes: Sequence[int], last_bias: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Initial weights of a conditional flow's hypernetwork ``MLP(sizes)``, the same on both
    backends (the backends' ``nets.MLP`` draw their own initial weights differently).

    Hidden layers as ``torch.nn.Linear`` (uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``,
    weight then bias, layer by layer, from numpy's generator seeded ``seed``); the last layer
    has zero weights and bias ``last_bias``, so the flow starts from the parameters
    ``last_bias`` whatever the context.

    Returns:
        Weights under torch's names (``layers.0.weight`` ``(out, in)``, ``layers.0.bias``).
    """
    rng = np.random.default_rng(seed)
    weights = {}
    n_layers = len(sizes) - 1
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i == n_layers - 1:
            weights[f"layers.{i}.weight"] = np.zeros((fan_out, fan_in))
            weights[f"layers.{i}.bias"] = np.asarray(last_bias, dtype=float)
        else:
            bound = 1.0 / math.sqrt(fan_in)
            weights[f"layers.{i}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in))
            weights[f"layers.{i}.bias"] = rng.uniform(-bound, bound, fan_out)
    return weights
