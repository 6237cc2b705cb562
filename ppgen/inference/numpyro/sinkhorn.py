"""The debiased Sinkhorn divergence between two point clouds, through ott-jax (mirrors
:mod:`ppgen.inference.pyro.sinkhorn`, which solves the same problems with POT).

With the cost ``C(x, y) = |x - y|_2^p`` and the entropic regularisation ``epsilon > 0``,

    OT_eps(a, b) = min_{P in U(a, b)} <P, C> + epsilon KL(P || a (x) b),
    S_eps(a, b) = OT_eps(a, b) - (OT_eps(a, a) + OT_eps(b, b)) / 2,

for the uniform measures ``a`` on the ``n`` rows of ``x`` and ``b`` on the ``m`` rows of
``y`` (Genevay, Peyre & Cuturi 2018, "Learning generative models with Sinkhorn
divergences"; Feydy et al. 2019, "Interpolating between optimal transport and MMD using
Sinkhorn divergences"). ``OT_eps`` includes its entropic term, the convention of Feydy et al.
2019 under which ``S_eps`` is symmetric, ``>= 0`` and ``0`` only for ``a = b`` (the kernels
``exp(-C / epsilon)`` of p = 1 and 2 are universal); POT's ``empirical_sinkhorn_divergence``
drops that term (the "sharp" variant) and is not this quantity.

The three problems are solved by ott's Sinkhorn in the log domain until the marginal
violation ``|P^T 1 - b|_2`` falls under ``threshold`` (checked every 10 iterations) or
``max_iterations`` is reached; an unconverged run returns its last iterate, silently, as on
the Pyro side. The gradient is the envelope theorem's (ott's Danskin rule:
``dOT_eps / dC = P``), exact at convergence; it needs no backpropagation through the
iterations, and the function can be compiled (``jax.jit``) and differentiated
(``jax.grad``) with respect to ``x`` and ``y``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from ott.geometry import costs, pointcloud
from ott.tools import sinkhorn_divergence as ott_sinkhorn_divergence

from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_count, check_non_negative
from ppgen.inference.games import check_epsilon

__all__ = ["SUPPORTED_P", "check_p", "sinkhorn_divergence"]

#: Powers ``p`` of the cost ``|x - y|_2^p`` supported on both backends.
SUPPORTED_P = (1, 2)


def check_p(p: object) -> int:
    """Return the cost power ``p`` if it is in :data:`SUPPORTED_P`.

    Raises:
        ConfigError: ``p`` is not the integer 1 or 2 (``2.0`` and ``True`` are refused).
    """
    if isinstance(p, bool) or not isinstance(p, int) or p not in SUPPORTED_P:
        raise ConfigError(f"p must be 1 or 2 (the cost |x - y|^p), got {p!r}")
    return p


def _check_points(x: jax.Array, y: jax.Array) -> None:
    """Raise DataError unless ``x`` ``(n, d)`` and ``y`` ``(m, d)`` are non-empty point sets."""
    for name, v in (("x", x), ("y", y)):
        if v.ndim != 2 or 0 in v.shape:
            raise DataError(
                f"{name} must be a non-empty (points, features) array, got shape {v.shape}"
            )
    if x.shape[1] != y.shape[1]:
        raise DataError(
            f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
        )


@jtu.register_pytree_node_class
class _Euclidean(costs.CostFn):
    """``|x - y|_2`` with a zero gradient at ``x = y``. ott's ``costs.Euclidean`` (0.6) is
    wrong there under differentiation: the custom JVP of its norm evaluates the primal at a
    vector of ones, so ``jax.value_and_grad`` sees ``sqrt(d)`` on the diagonal of ``C(x, x)``."""

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        sq = jnp.sum((x - y) ** 2)
        positive = sq > 0
        # the inner where keeps sqrt's gradient finite on the branch that is not taken
        return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def sinkhorn_divergence(
    x: jax.Array,
    y: jax.Array,
    *,
    epsilon: float,
    p: int = 2,
    threshold: float = 1e-4,
    max_iterations: int = 1000,
) -> jax.Array:
    """The debiased Sinkhorn divergence ``S_eps(a, b)`` between the uniform measures on the
    rows of ``x`` and ``y`` (module docstring; Feydy et al. 2019, entropic term included).

    Args:
        x: ``(n, d)`` points, e.g. a generator's samples; differentiable.
        y: ``(m, d)`` points, e.g. a data batch. Both are promoted to a common float dtype.
        epsilon: Entropic regularisation, > 0, in the cost's units (distance^p). A Python
            number (a static hyper-parameter of the compiled function).
        p: Cost power, ``C(x, y) = |x - y|_2^p``: 1 or 2 (:data:`SUPPORTED_P`).
        threshold: Sinkhorn stops when the L2 norm of the violation of the second marginal,
            ``|P^T 1 - b|_2``, is below it (marginals sum to 1). The default 1e-4 is about
            ott's default of 1e-3 on the L1 norm, for 128 points.
        max_iterations: Cap on the Sinkhorn iterations of each of the three problems.

    Returns:
        The scalar ``S_eps``, in the cost's units, in the promoted dtype.

    Raises:
        ConfigError: ``epsilon`` not a finite number > 0, ``p`` not 1 or 2, a negative
            ``threshold`` or a ``max_iterations`` that is not a positive integer.
        DataError: ``x`` or ``y`` not a non-empty 2-D array, or different feature counts.
    """
    epsilon = check_epsilon(epsilon)
    p = check_p(p)
    threshold = check_non_negative("threshold", threshold)
    max_iterations = check_count("max_iterations", max_iterations)
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_points(x, y)
    dtype = jnp.result_type(x, y, float)  # a float dtype; a Python float is weakly typed
    x, y = x.astype(dtype), y.astype(dtype)

    # SqEuclidean computes |x|^2 + |y|^2 - 2 x.y, as the Pyro side does
    cost_fn = costs.SqEuclidean() if p == 2 else _Euclidean()
    divergence, _ = ott_sinkhorn_divergence.sinkhorn_divergence(
        pointcloud.PointCloud,
        x,
        y,
        cost_fn=cost_fn,
        epsilon=epsilon,
        solve_kwargs={
            "threshold": threshold,
            "max_iterations": max_iterations,
            "norm_error": 2,  # the L2 norm, POT's criterion
        },
    )
    return divergence
