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

The three problems are solved by ott's Sinkhorn in the log domain until the marginal violation
``|P^T 1 - b|_2`` falls under ``threshold`` (checked every 10 iterations) or ``max_iterations``
is reached; an unconverged run returns its last iterate with a
:class:`~ppgen.errors.ConvergenceWarning` (issued from the compiled code through
``jax.debug.callback``), as on the Pyro side. The gradient is the envelope theorem's (ott's
Danskin rule: ``dOT_eps / dC = P``), exact at convergence; it needs no backpropagation through
the iterations, and the function can be compiled (``jax.jit``) and differentiated
(``jax.grad``) with respect to ``x`` and ``y``.

**Unbalanced transport** (``rho``; Sejourne et al. 2019, "Sinkhorn divergences for unbalanced
optimal transport"): the marginal constraints become penalties ``rho KL(P 1 || a) +
rho KL(P^T 1 || b)`` (generalised KL), so that mass is not carried much farther than a
distance of about ``rho^(1/p)``. Between minibatches this is what keeps a model's samples on
their modes: two batches of a mixture never hold the same count of points in each mode, and
balanced transport must carry the surplus to another mode on every step, which pulls samples
between modes (Fatras et al. 2021, "Unbalanced minibatch optimal transport"). ``OT_eps`` keeps
the entropic term relative to ``a (x) b``, the paper's, and ``S_eps`` adds the paper's
``epsilon (m(a) - m(b))^2 / 2``, 0 here (both measures have mass 1). ott's unbalanced solver
takes its entropy relative to the counting measure, a different problem once mass may be
created or destroyed; the cost ``C + epsilon log(n m)`` turns it into this one (the same plan
to float precision), and the value is the primal of that plan, as on the Pyro side. The
stopping rule is ott's (the violation of the relaxed marginal, every 10 iterations)."""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy
from ott.geometry import costs, geometry, pointcloud
from ott.solvers import linear
from ott.tools import sinkhorn_divergence as ott_sinkhorn_divergence

from ppgen.errors import ConfigError, DataError
from ppgen.inference.checks import check_non_negative
from ppgen.inference.games import (
    check_epsilon,
    check_rho,
    check_sinkhorn_iterations,
    warn_unconverged_sinkhorn,
)

__all__ = ["SUPPORTED_P", "check_p", "sinkhorn_divergence"]

#: Powers ``p`` of the cost ``|x - y|_2^p`` supported on both backends.
SUPPORTED_P = (1, 2)


def check_p(p: object) -> int:
    """Return the cost power ``p`` if it is in :data:`SUPPORTED_P`.

    Raises:
        ConfigError: ``p`` is not the integer 1 or 2 (``2.0`` and ``True`` are refused).
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p not in SUPPORTED_P:
        raise ConfigError(f"p must be 1 or 2 (the cost |x - y|^p), got {p!r}")
    return int(p)


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


@jax.custom_jvp
def _euclidean_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """``|x_i - y_j|_2``, ``(n, m)``, from the differences: exactly 0 where ``x_i = y_j``.

    Its JVP is written out (below): autodiff through the ``(n, m, d)`` differences takes
    ~100 times longer than the distances on CPU (d = 784), and ott's ``costs.Euclidean``
    (0.6) is wrong under differentiation (its norm's custom JVP evaluates the primal at a
    vector of ones, which puts ``sqrt(d)`` on the diagonal of ``C(x, x)``).
    """
    return jnp.sqrt(jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1))


@_euclidean_distances.defjvp
def _euclidean_distances_jvp(primals: tuple, tangents: tuple) -> tuple[jax.Array, jax.Array]:
    x, y = primals
    dx, dy = tangents
    c = _euclidean_distances(x, y)
    # (x_i - y_j).(dx_i - dy_j) as matrix products, whose transpose (the VJP) is two more
    dot = (
        jnp.sum(x * dx, axis=-1)[:, None] - x @ dy.T - dx @ y.T + jnp.sum(y * dy, axis=-1)[None, :]
    )
    positive = c > 0
    # the gradient of |z| at z = 0 is taken as 0 (a point's distance to itself)
    return c, jnp.where(positive, dot / jnp.where(positive, c, 1.0), 0.0)


def _cost_matrix(x: jax.Array, y: jax.Array, p: int) -> jax.Array:
    """``C(x_i, y_j) = |x_i - y_j|_2^p``, ``(n, m)``, computed once for all iterations."""
    if p == 2:
        # ott's SqEuclidean: |x|^2 + |y|^2 - 2 x.y, as on the Pyro side
        return pointcloud.PointCloud(x, y, cost_fn=costs.SqEuclidean()).cost_matrix
    return _euclidean_distances(x, y)


def sinkhorn_divergence(
    x: jax.Array,
    y: jax.Array,
    *,
    epsilon: float,
    p: int = 2,
    rho: float | None = None,
    threshold: float = 1e-4,
    max_iterations: int = 1000,
) -> jax.Array:
    """The debiased Sinkhorn divergence ``S_eps(a, b)`` between the uniform measures on the
    rows of ``x`` and ``y`` (module docstring; Feydy et al. 2019, entropic term included), or
    its unbalanced version (``rho``; Sejourne et al. 2019).

    Args:
        x: ``(n, d)`` points, e.g. a generator's samples; differentiable.
        y: ``(m, d)`` points, e.g. a data batch. Both are promoted to a common float dtype.
        epsilon: Entropic regularisation, > 0, in the cost's units (distance^p). A Python
            number (a static hyper-parameter of the compiled function).
        p: Cost power, ``C(x, y) = |x - y|_2^p``: 1 or 2 (:data:`SUPPORTED_P`).
        rho: Unbalanced transport: the weight (> 0, in the cost's units) of the KL penalties
            that replace the marginal constraints; mass rarely travels farther than about
            ``rho^(1/p)`` (geomloss's ``reach``). ``None`` or ``inf``: balanced.
        threshold: Sinkhorn stops when the L2 norm of the violation of the second marginal,
            ``|P^T 1 - b|_2``, is below it (marginals sum to 1; unbalanced: ott's violation
            of the relaxed marginal). The default 1e-4 is about ott's default of 1e-3 on the
            L1 norm, for 128 points.
        max_iterations: Cap on the Sinkhorn iterations of each of the three problems.

    Returns:
        The scalar ``S_eps``, in the cost's units, in the promoted dtype.

    Raises:
        ConfigError: ``epsilon`` not a finite number > 0, ``p`` not 1 or 2, ``rho`` not a
            number > 0 (or None), a negative ``threshold`` or a ``max_iterations`` that is
            not an integer in 1 .. 2**31 - 1.
        DataError: ``x`` or ``y`` not a non-empty 2-D array, or different feature counts.
    """
    epsilon = check_epsilon(epsilon)
    p = check_p(p)
    rho = check_rho(rho)
    threshold = check_non_negative("threshold", threshold)
    max_iterations = check_sinkhorn_iterations(max_iterations)
    x, y = jnp.asarray(x), jnp.asarray(y)
    _check_points(x, y)
    dtype = jnp.result_type(x, y, float)  # a float dtype; a Python float is weakly typed
    x, y = x.astype(dtype), y.astype(dtype)

    def warn(converged: object) -> None:
        if not all(bool(c) for c in converged):
            warn_unconverged_sinkhorn(epsilon, threshold, max_iterations)

    if rho is not None:
        (xy, ok_xy), (xx, ok_xx), (yy, ok_yy) = (
            _unbalanced_ot(_cost_matrix(u, v, p), epsilon, rho, threshold, max_iterations)
            for u, v in ((x, y), (x, x), (y, y))
        )
        jax.debug.callback(warn, (ok_xy, ok_xx, ok_yy))
        return xy - 0.5 * (xx + yy)  # + epsilon (m(a) - m(b))^2 / 2 = 0: both masses are 1

    # cost matrices built once: a PointCloud geometry recomputes its costs at every
    # iteration (4 times slower for p = 2, d = 784)
    divergence, out = ott_sinkhorn_divergence.sinkhorn_divergence(
        geometry.Geometry,
        _cost_matrix(x, y, p),
        _cost_matrix(x, x, p),
        _cost_matrix(y, y, p),
        epsilon=epsilon,
        solve_kwargs={
            "threshold": threshold,
            "max_iterations": max_iterations,
            "norm_error": 2,  # the L2 norm, POT's criterion
        },
    )
    jax.debug.callback(warn, out.converged)
    return divergence


def _kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """The generalised KL divergence ``sum p log(p / q) - p + q`` (0 log 0 = 0)."""
    return jnp.sum(xlogy(p, p) - xlogy(p, q) - p + q)


def _unbalanced_ot(
    c: jax.Array, epsilon: float, rho: float, threshold: float, max_iterations: int
) -> tuple[jax.Array, jax.Array]:
    """Unbalanced ``OT_eps`` of the cost matrix ``c`` ``(n, m)`` between uniform measures of
    mass 1 (Sejourne et al. 2019), and whether ott's solve converged.

    ``OT_eps = <P, C> + epsilon KL(P || a (x) b) + rho KL(P 1 || a) + rho KL(P^T 1 || b)`` at
    the optimal plan ``P``; its gradient in ``c`` is ``P`` (the envelope theorem, exact at
    convergence; the solve is not differentiated)."""
    n, m = c.shape
    fixed = jax.lax.stop_gradient(c)
    tau = rho / (rho + epsilon)  # ott's tau_a = tau_b for the penalty rho
    # ott's entropy is relative to the counting measure; relative to a (x) b = 1 / (n m) it is
    # the same problem with the cost C + epsilon log(n m)
    shifted = geometry.Geometry(fixed + epsilon * math.log(n * m), epsilon=epsilon)
    out = linear.solve(
        shifted, tau_a=tau, tau_b=tau, threshold=threshold, max_iterations=max_iterations,
        norm_error=2,
    )  # fmt: skip
    plan = jax.lax.stop_gradient(out.matrix)
    a = jnp.full((n,), 1.0 / n, c.dtype)
    b = jnp.full((m,), 1.0 / m, c.dtype)
    value = (
        jnp.sum(plan * fixed)
        + epsilon * _kl(plan, a[:, None] * b[None, :])
        + rho * (_kl(plan.sum(1), a) + _kl(plan.sum(0), b))
    )
    return value + jnp.sum(plan * (c - fixed)), out.converged
