"""The debiased Sinkhorn divergence between two point clouds, through POT (mirrors
:mod:`ppgen.inference.numpyro.sinkhorn`, which solves the same problems with ott-jax).

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

Each ``OT_eps`` is what POT's ``ot.solve(C, reg=epsilon, reg_type="KL")`` computes: log-domain
Sinkhorn (``ot.bregman.sinkhorn_log``, called directly to read its convergence) until the
marginal violation ``|P^T 1 - b|_2`` falls under ``threshold`` (checked every 10 iterations) or
``max_iterations`` is reached; an unconverged run returns its last iterate with a
:class:`~ppgen.errors.ConvergenceWarning` (in place of POT's own "did not converge"), as on the
NumPyro side. The value is the primal ``<P, C> + epsilon KL(P || a (x) b)`` of the final plan.
The gradient is the envelope theorem's (``grad="envelope"``: ``dOT_eps / dC = P``, the
iterations detached), exact at convergence. geomloss's ``SamplesLoss`` was not used: its
epsilon-scaling runs a fixed schedule with no convergence test, 1e-3 to 2e-2 (relative) off the
converged value at its default ``scaling=0.5``, 1e-6 only at ``scaling=0.999``.

Speed: POT has no symmetric update for ``OT_eps(a, a)`` (ott uses the averaged one of Feydy
et al. 2019, eq. 25), so with an ``epsilon`` small against the squared spread of
low-dimensional points those two terms take many more iterations here than on NumPyro. The
iterations are small torch operations: on a loaded CPU, ``torch.set_num_threads(1)`` can make
them far faster.

**Unbalanced transport** (``rho``; Sejourne et al. 2019; why it matters between minibatches:
the NumPyro module's docstring): ``OT_eps = min_P <P, C> + epsilon KL(P || a (x) b) +
rho KL(P 1 || a) + rho KL(P^T 1 || b)`` (generalised KL). **Written here, not taken from POT**:
POT 0.9.7's log-domain solver for it, ``ot.unbalanced.sinkhorn_stabilized_unbalanced``,
diverges as soon as it absorbs (measured: a plan of total mass 8.5e15 on 30 and 40 Gaussian
points at epsilon 0.1, rho 1, float64; the scaling solvers underflow at that epsilon). ppgen
iterates the log-domain updates of Sejourne et al. 2019 (Algorithm 1, those ott runs),
``f = -rho/(rho + eps) * eps * log sum_j b_j exp((g_j - C_ij) / eps)`` and its mirror for
``g``, until the violation of the relaxed marginal, ``|P 1 - a exp(-f / rho)|_2``, falls under
``threshold`` (checked every 10 iterations). The value and the gradient are as above (the
primal of the final plan; ``dOT_eps / dC = P``).
"""

from __future__ import annotations

import math
import numbers

import ot
import torch

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


def _check_points(x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise DataError unless ``x`` ``(n, d)`` and ``y`` ``(m, d)`` are non-empty point sets."""
    for name, v in (("x", x), ("y", y)):
        if v.ndim != 2 or 0 in v.shape:
            raise DataError(
                f"{name} must be a non-empty (points, features) array, got shape {tuple(v.shape)}"
            )
    if x.shape[1] != y.shape[1]:
        raise DataError(
            f"x and y must have the same number of features, got {x.shape[1]} and {y.shape[1]}"
        )


def _cost(x: torch.Tensor, y: torch.Tensor, p: int) -> torch.Tensor:
    """``|x_i - y_j|_2^p``, ``(n, m)``, computed as ott's costs do on the NumPyro side."""
    if p == 2:
        # |x|^2 + |y|^2 - 2 x.y, ott's SqEuclidean
        return (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * x @ y.T
    # from the differences (exact 0 at x_i = y_j, where cdist's gradient is 0)
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def _entropic_ot(
    c: torch.Tensor, epsilon: float, threshold: float, max_iterations: int
) -> tuple[torch.Tensor, bool]:
    """``OT_eps`` of the cost matrix ``c`` between uniform marginals (a 0-d tensor), and
    whether its solve converged: what
    ``ot.solve(c, reg=epsilon, reg_type="KL", method="sinkhorn_log", grad="envelope")``
    computes, through POT's ``sinkhorn_log`` itself so that its convergence is read from
    its log (``ot.solve`` reports it only as a warning, which would have to be caught by
    changing the warning filters at every call)."""
    n, m = c.shape
    a = torch.full((n,), 1.0 / n, dtype=c.dtype, device=c.device)
    b = torch.full((m,), 1.0 / m, dtype=c.dtype, device=c.device)
    fixed = c.detach()
    plan, log = ot.bregman.sinkhorn_log(
        a, b, fixed, epsilon, numItermax=max_iterations, stopThr=threshold, log=True, warn=False
    )
    # the marginal violation is checked every 10 iterations; the last check decides
    converged = bool(log["err"]) and float(log["err"][-1]) < threshold
    outer = a[:, None] * b[None, :]
    kl = torch.sum(plan * torch.log(plan / (outer + 1e-15) + 1e-16))  # POT's kl_div, as solve
    value = (plan * fixed).sum() + epsilon * kl
    # the envelope theorem's gradient, exact at convergence: d OT_eps / d C = P
    return value + (plan * (c - fixed)).sum(), converged


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    p: int = 2,
    rho: float | None = None,
    threshold: float = 1e-4,
    max_iterations: int = 1000,
) -> torch.Tensor:
    """The debiased Sinkhorn divergence ``S_eps(a, b)`` between the uniform measures on the
    rows of ``x`` and ``y`` (module docstring; Feydy et al. 2019, entropic term included), or
    its unbalanced version (``rho``; Sejourne et al. 2019).

    Args:
        x: ``(n, d)`` points, e.g. a generator's samples; differentiable.
        y: ``(m, d)`` points, e.g. a data batch. Both are promoted to a common float dtype.
        epsilon: Entropic regularisation, > 0, in the cost's units (distance^p).
        p: Cost power, ``C(x, y) = |x - y|_2^p``: 1 or 2 (:data:`SUPPORTED_P`).
        rho: Unbalanced transport: the weight (> 0, in the cost's units) of the KL penalties
            that replace the marginal constraints; mass rarely travels farther than about
            ``rho^(1/p)`` (geomloss's ``reach``). ``None`` or ``inf``: balanced.
        threshold: Sinkhorn stops when the L2 norm of the violation of the second marginal,
            ``|P^T 1 - b|_2``, is below it (marginals sum to 1; unbalanced: the violation of
            the relaxed marginal, module docstring). The default 1e-4 is about ott's default
            of 1e-3 on the L1 norm, for 128 points.
        max_iterations: Cap on the Sinkhorn iterations of each of the three problems.

    Returns:
        The 0-d ``S_eps``, in the cost's units, in the promoted dtype.

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
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    _check_points(x, y)
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    x, y = x.to(dtype), y.to(dtype)

    (xy, ok_xy), (xx, ok_xx), (yy, ok_yy) = (
        _entropic_ot(_cost(u, v, p), epsilon, threshold, max_iterations)
        if rho is None
        else _unbalanced_ot(_cost(u, v, p), epsilon, rho, threshold, max_iterations)
        for u, v in ((x, y), (x, x), (y, y))
    )
    if not (ok_xy and ok_xx and ok_yy):  # one warning a call, as on NumPyro
        warn_unconverged_sinkhorn(epsilon, threshold, max_iterations)
    # unbalanced: + epsilon (m(a) - m(b))^2 / 2 (Sejourne et al. 2019) = 0, both masses are 1
    return xy - 0.5 * (xx + yy)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The generalised KL divergence ``sum p log(p / q) - p + q`` (0 log 0 = 0)."""
    return torch.sum(torch.xlogy(p, p) - torch.xlogy(p, q) - p + q)


def _unbalanced_ot(
    c: torch.Tensor, epsilon: float, rho: float, threshold: float, max_iterations: int
) -> tuple[torch.Tensor, bool]:
    """Unbalanced ``OT_eps`` of the cost matrix ``c`` ``(n, m)`` between uniform measures of
    mass 1 (a 0-d tensor), and whether its solve converged (module docstring: the log-domain
    updates of Sejourne et al. 2019, written here because POT's diverge)."""
    n, m = c.shape
    fixed = c.detach()
    log_a = torch.full((n,), -math.log(n), dtype=c.dtype, device=c.device)
    log_b = torch.full((m,), -math.log(m), dtype=c.dtype, device=c.device)
    tau = rho / (rho + epsilon)
    f = torch.zeros_like(log_a)
    g = torch.zeros_like(log_b)
    converged = False

    def log_plan() -> torch.Tensor:  # log P_ij = log a_i + log b_j + (f_i + g_j - C_ij) / eps
        return log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - fixed) / epsilon

    with torch.no_grad():
        for it in range(1, max_iterations + 1):
            f = -tau * epsilon * torch.logsumexp(log_b[None, :] + (g[None, :] - fixed) / epsilon, 1)
            g = -tau * epsilon * torch.logsumexp(log_a[:, None] + (f[:, None] - fixed) / epsilon, 0)
            if it % 10 == 0 or it == max_iterations:
                # after the g-update P^T 1 = b exp(-g / rho) holds; the rows are checked
                rows = torch.logsumexp(log_plan(), 1).exp()
                error = torch.linalg.vector_norm(rows - (log_a - f / rho).exp())
                if bool(error < threshold):
                    converged = True
                    break
        plan = log_plan().exp()
    a, b = log_a.exp(), log_b.exp()
    value = (
        (plan * fixed).sum()
        + epsilon * _kl(plan, a[:, None] * b[None, :])
        + rho * (_kl(plan.sum(1), a) + _kl(plan.sum(0), b))
    )
    # the envelope theorem's gradient, exact at convergence: d OT_eps / d C = P
    return value + (plan * (c - fixed)).sum(), converged
