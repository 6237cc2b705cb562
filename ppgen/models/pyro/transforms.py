"""Simple flow transforms for Pyro: planar, radial, permutations, LU-linear, diagonal scaling.

Each is a :class:`~pyro.distributions.torch_transform.TransformModule` (an ``nn.Module``
holding its parameters) or, when conditional, a
:class:`~pyro.distributions.conditional.ConditionalTransformModule` with ``.condition(context)
-> Transform``, so ``TransformedDistribution(base, [t, ...])`` samples, scores and
reparametrises through them. Planar and radial are Pyro's own classes (same maths, same
parameter names) given a seeded constructor, an inverse (Pyro only inverts values it cached
on a forward call) and a log-det-Jacobian computed from ``x`` rather than from the last
forward call. ``ppgen.models.numpyro.transforms`` is the NumPyro twin: the same weights give
the same numbers.

Every transform has ``get_weights() -> dict[str, np.ndarray]`` (Pyro's
``named_parameters()`` names, torch layout) and ``set_weights(weights) -> self``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyro.distributions.transforms as pyro_transforms
import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from pyro.distributions.transforms.planar import ConditionedPlanar as PyroConditionedPlanar
from pyro.distributions.transforms.radial import ConditionedRadial as PyroConditionedRadial
from torch import nn
from torch.distributions import Transform, constraints

from ppgen.models.conventions import spawn_seeds
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.params import ModuleWeights, set_weights
from ppgen.models.transforms import (
    PLANAR_PARAMS,
    RADIAL_PARAMS,
    check_dim,
    check_hidden,
    check_permutation,
    hypernet_init,
    inverse_permutation,
    lu_init,
    param_sizes,
    planar_init,
    radial_init,
    random_permutation,
    reverse_permutation,
)

__all__ = [
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionedPlanar",
    "ConditionedRadial",
    "DiagonalScaling",
    "LULinear",
    "Permutation",
    "Planar",
    "Radial",
    "TransformWeights",
    "random_permutation",
    "reverse_permutation",
]

# Safeguarded Newton iterations of the planar inverse (Numerical Recipes' rtsafe): a step
# that leaves the bracket or fails to halve the previous step is a bisection, so 100
# iterations reach float64 resolution from any bracket; near the root Newton is quadratic.
PLANAR_INVERSE_ITERATIONS = 100


class TransformWeights(ModuleWeights):
    """Mixin for an ``nn.Module`` transform: its parameters as numpy arrays and back
    (:class:`ppgen.models.pyro.params.ModuleWeights`; the NumPyro twin's name)."""


class _SeededInit(TransformWeights):
    """ppgen's constructor for Pyro's planar and radial classes: parameters from
    ``_initial(input_dim, seed)`` (numpy), not from torch's global generator."""

    _initial: Callable[[int, int], dict[str, np.ndarray]]

    def __init__(self, input_dim: int, seed: int = 0) -> None:
        self.seed = int(seed)  # read by reset_parameters, which Pyro's __init__ calls
        super().__init__(check_dim(input_dim, "input_dim"))

    def reset_parameters(self) -> None:
        """Set the parameters to ppgen's seeded initial values (the identity map)."""
        set_weights(self, type(self)._initial(self.input_dim, self.seed))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum(a * b, -1, keepdim=True)``, the leading dims broadcast."""
    return (a * b).sum(-1, keepdim=True)


def _planar_root(s: torch.Tensor, c: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The ``a`` with ``a + c tanh(a + b) = s`` (``c > -1``, so the left side is increasing).

    Newton's method safeguarded by bisection (rtsafe, Press et al., Numerical Recipes 9.4)
    on the bracket ``[s - |c|, s + |c|]`` (valid since ``|tanh| <= 1``), run without
    gradients; one last Newton step with gradients then gives the implicit-function
    derivatives ``da/dtheta = -(df/dtheta) / (df/da)``.
    """
    with torch.no_grad():
        s0, c0, b0 = s.detach(), c.detach(), b.detach()
        lo, hi = s0 - c0.abs(), s0 + c0.abs()
        a, step = s0.expand_as(lo).clone(), hi - lo
        for _ in range(PLANAR_INVERSE_ITERATIONS):
            t = torch.tanh(a + b0)
            f = a + c0 * t - s0
            lo = torch.where(f < 0, a, lo)
            hi = torch.where(f > 0, a, hi)
            newton_step = f / (1 + c0 * (1 - t * t))
            newton = a - newton_step
            # Newton only where it stays in the bracket and at least halves the last step.
            keep = (newton > lo) & (newton < hi) & (newton_step.abs() <= 0.5 * step.abs())
            keep = keep | (f == 0)
            step = torch.where(keep, newton_step, 0.5 * (hi - lo))
            a = torch.where(keep, newton, 0.5 * (lo + hi))
    t = torch.tanh(a + b)
    return a - (a + c * t - s) / (1 + c * (1 - t * t))


class _PlanarMaths:
    """Inverse and stateless log-det-Jacobian for Pyro's planar transform classes.

    ``y = x + u_hat tanh(w.x + b)``; with ``a = w.x``, ``w.y = a + (w.u_hat) tanh(a + b)``
    is increasing in ``a`` (``w.u_hat > -1``), so the inverse solves that scalar equation
    (Rezende & Mohamed 2015, appendix A.1) and returns ``x = y - u_hat tanh(a + b)``.
    """

    def _planar_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bias, u, w = self._params() if callable(self._params) else self._params
        return bias, self.u_hat(u, w), w

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        bias, u_hat, w = self._planar_params()
        a = _planar_root(_dot(w, y), _dot(w, u_hat), bias)  # (..., 1)
        return y - u_hat * torch.tanh(a + bias)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log|1 + (1 - tanh^2(w.x + b)) w.u_hat|``, shape ``x.shape[:-1]``."""
        bias, u_hat, w = self._planar_params()
        act = torch.tanh(_dot(w, x) + bias)
        return torch.log1p((1 - act * act) * _dot(w, u_hat)).squeeze(-1)


class ConditionedPlanar(_PlanarMaths, PyroConditionedPlanar):
    """A planar flow with given parameters, what :meth:`ConditionalPlanar.condition` returns.

    ``y = x + u_hat tanh(w^T x + b)``, Pyro's ``ConditionedPlanar`` with an inverse.

    Args:
        params: ``(bias (..., 1), u (..., D), w (..., D))``; their leading dims broadcast
            against the input's.
    """

    def __init__(self, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        super().__init__(params)


class Planar(_PlanarMaths, _SeededInit, pyro_transforms.Planar):
    """Planar flow ``y = x + u_hat tanh(w^T x + b)`` (Rezende & Mohamed 2015, eq. 10).

    Pyro's :class:`~pyro.distributions.transforms.Planar` (parameters ``bias (1,)``, ``u
    (D,)``, ``w (D,)``; invertibility by ``u_hat = u + (softplus(w.u) - 1 - w.u) w/|w|^2``,
    so ``w.u_hat > -1``, appendix A.1) with ppgen's seeded initialisation (the identity map,
    see :func:`ppgen.models.transforms.planar_init`), an inverse by a safeguarded 1-D Newton
    solve of ``w.y = a + w.u_hat tanh(a + b)`` for ``a = w.x``, and ``log_abs_det_jacobian``
    ``log|1 + (1 - tanh^2(w.x + b)) w.u_hat|`` in nats, shape ``x.shape[:-1]``.

    Args:
        input_dim: ``D``, the event size.
        seed: Seed of the initial ``w``.

    Raises:
        ConfigError: ``input_dim`` is not a positive integer.
    """

    _initial = staticmethod(planar_init)


class _RadialMaths:
    """Inverse and stateless log-det-Jacobian for Pyro's radial transform classes.

    ``y - x0 = (1 + beta / (alpha + r)) (x - x0)`` with ``r = |x - x0|``, so ``r' = |y - x0|
    = r (alpha + beta + r) / (alpha + r)``: ``r`` is the positive root of ``r^2 + (alpha +
    beta - r') r - alpha r' = 0`` (computed without cancellation) and ``x = x0 + (y - x0)
    (alpha + r) / (alpha + beta + r)``.
    """

    def _radial_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x0, alpha_prime, beta_prime = self._params() if callable(self._params) else self._params
        alpha = F.softplus(alpha_prime)
        return x0, alpha, -alpha + F.softplus(beta_prime), F.softplus(beta_prime)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        x0, alpha, _, alpha_plus_beta = self._radial_params()
        diff = y - x0
        r_out = diff.norm(dim=-1, keepdim=True)
        half_b = 0.5 * (alpha_plus_beta - r_out)
        root = torch.sqrt(half_b * half_b + alpha * r_out)
        # r = -half_b + root, written as alpha r' / (half_b + root) when half_b > 0.
        r = torch.where(half_b > 0, alpha * r_out / (half_b + root), root - half_b)
        return x0 + diff * (alpha + r) / (alpha_plus_beta + r)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(D - 1) log(1 + beta h) + log(1 + beta h - beta h^2 r)``, ``h = 1/(alpha + r)``,
        shape ``x.shape[:-1]`` (Rezende & Mohamed 2015, eq. 14)."""
        x0, alpha, beta, _ = self._radial_params()
        r = (x - x0).norm(dim=-1, keepdim=True)
        h = (alpha + r).reciprocal()
        beta_h = beta * h
        ladj = (x0.size(-1) - 1) * torch.log1p(beta_h) + torch.log1p(beta_h - beta_h * h * r)
        return ladj.squeeze(-1)


class ConditionedRadial(_RadialMaths, PyroConditionedRadial):
    """A radial flow with given parameters, what :meth:`ConditionalRadial.condition` returns.

    Args:
        params: ``(x0 (..., D), alpha_prime (..., 1), beta_prime (..., 1))``.
    """

    def __init__(self, params: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
        super().__init__(params)


class Radial(_RadialMaths, _SeededInit, pyro_transforms.Radial):
    """Radial flow ``y = x + beta / (alpha + |x - x0|) (x - x0)`` (Rezende & Mohamed 2015).

    Pyro's :class:`~pyro.distributions.transforms.Radial` (parameters ``x0 (D,)``,
    ``alpha_prime (1,)``, ``beta_prime (1,)``; ``alpha = softplus(alpha')``, ``beta = -alpha
    + softplus(beta')`` so ``beta > -alpha``, appendix A.2) with ppgen's seeded
    initialisation (the identity, :func:`ppgen.models.transforms.radial_init`), a closed-form
    inverse and ``log_abs_det_jacobian`` in nats, shape ``x.shape[:-1]``.

    Args:
        input_dim: ``D``, the event size.
        seed: Seed of the initial parameters.

    Raises:
        ConfigError: ``input_dim`` is not a positive integer.
    """

    _initial = staticmethod(radial_init)


class _HypernetworkFlow(TransformWeights):
    """Shared body of :class:`ConditionalPlanar` and :class:`ConditionalRadial`: an ``MLP``
    ``nn`` from the context to the parameters ``_names`` (sizes ``D`` or 1, concatenated), its
    last layer zero with the identity parameters ``_initial(D, seed)`` as bias, so a fresh
    transform is the identity whatever the context."""

    _names: tuple[str, ...]
    _initial: Callable[[int, int], dict[str, np.ndarray]]
    _conditioned: type

    def __init__(
        self,
        input_dim: int,
        context_dim: int,
        hidden: int | Sequence[int],
        seed: int = 0,
        activation: str = "relu",
    ) -> None:
        self.input_dim = check_dim(input_dim, "input_dim")
        net_seed, init_seed = spawn_seeds(seed, 2)
        init = type(self)._initial(self.input_dim, init_seed)
        sizes = [check_dim(context_dim, "context_dim"), *check_hidden(hidden)]
        sizes.append(sum(init[k].size for k in self._names))
        net = MLP(sizes, activation, seed=net_seed)
        bias = np.concatenate([init[k] for k in self._names])
        set_weights(net, hypernet_init(sizes, bias, net_seed))
        super().__init__(net)

    def _params(self, context: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = param_sizes(self._names, self.input_dim)
        return tuple(torch.split(self.nn(context), sizes, dim=-1))

    def condition(self, context: torch.Tensor) -> Transform:
        """The flow for ``context (..., context_dim)``, its parameters ``nn(context)``."""
        return self._conditioned(self._params(context))


class ConditionalPlanar(_HypernetworkFlow, pyro_transforms.ConditionalPlanar):
    """Planar flow whose ``(b, u, w)`` are an MLP of a context (Rezende & Mohamed 2015).

    ``nn(context)`` is split into ``bias (..., 1)``, ``u (..., D)``, ``w (..., D)`` (Pyro's
    order); ``.condition(context)`` returns a :class:`ConditionedPlanar`. The MLP's last
    layer has zero weights and the bias :class:`Planar` starts from, so a fresh transform is
    the identity whatever the context.

    Args:
        input_dim: ``D``, the event size.
        context_dim: Size of the context vector.
        hidden: Hidden widths of the hypernetwork (an int for one layer).
        seed: Seed of the hypernetwork and of the initial parameters.
        activation: The hypernetwork's activation (see ``nets.MLP``).

    Raises:
        ConfigError: A size that is not a positive integer, or an unknown activation.
    """

    _names, _initial, _conditioned = PLANAR_PARAMS, staticmethod(planar_init), ConditionedPlanar


class ConditionalRadial(_HypernetworkFlow, pyro_transforms.ConditionalRadial):
    """Radial flow whose ``(x0, alpha', beta')`` are an MLP of a context.

    ``nn(context)`` is split into ``x0 (..., D)``, ``alpha_prime (..., 1)``, ``beta_prime
    (..., 1)`` (Pyro's order); ``.condition(context)`` returns a :class:`ConditionedRadial`.
    A fresh transform is the identity, as :class:`ConditionalPlanar`, whose arguments and
    errors it shares.
    """

    _names, _initial, _conditioned = RADIAL_PARAMS, staticmethod(radial_init), ConditionedRadial


class Permutation(TransformWeights, pyro_transforms.Permute, TransformModule):
    """``y = x[..., permutation]``, log-det 0: Pyro's ``Permute`` as an ``nn.Module`` (so it
    sits in an ``nn.ModuleList`` with the other layers), the permutation a buffer.

    Args:
        permutation: A numpy index array, e.g. :func:`reverse_permutation` (NICE, RealNVP)
            or :func:`random_permutation` (MAF).

    Raises:
        ConfigError: Not a rearrangement of ``0, ..., D-1``.
    """

    def __init__(self, permutation: Sequence[int] | np.ndarray) -> None:
        perm = torch.as_tensor(check_permutation(permutation))
        super().__init__(perm)
        del self.permutation  # re-registered as a buffer so that .to(device) moves it
        self.register_buffer("permutation", perm)


class LULinear(TransformWeights, TransformModule):
    """Learned invertible linear map ``y = W x``, ``W = P L (U + diag(sign exp(log_diag)))``.

    The vector form of Glow's invertible 1x1 convolution (Kingma & Dhariwal 2018, sec. 3.2):
    ``P`` a fixed permutation, ``L`` unit lower triangular (parameter ``lower (D, D)``, its
    strictly lower part), ``U`` strictly upper (``upper (D, D)``) plus a diagonal of fixed
    sign and learned log-magnitude ``log_diag (D,)``. ``log|det W| = sum(log_diag)`` nats;
    the inverse is two triangular solves. Starts from a seeded random rotation
    (:func:`ppgen.models.transforms.lu_init`).

    Args:
        dim: ``D``, the event size.
        seed: Seed of the initial rotation (and so of ``P`` and the signs).

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        rows, sign, init = lu_init(dim, seed)
        for key, value in init.items():
            self.register_parameter(
                key, nn.Parameter(torch.as_tensor(value).to(torch.get_default_dtype()))
            )
        self.register_buffer("rows", torch.as_tensor(rows))
        self.register_buffer("inverse_rows", torch.as_tensor(inverse_permutation(rows)))
        self.register_buffer("diag_sign", torch.as_tensor(sign).to(torch.get_default_dtype()))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L, U)``: unit lower and upper triangular, ``W = P L U``."""
        eye = torch.eye(self.log_diag.size(-1), dtype=self.log_diag.dtype)
        lower = torch.tril(self.lower, -1) + eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.diag_sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> torch.Tensor:
        """``W = P L U``, shape ``(D, D)``."""
        lower, upper = self.factors()
        return (lower @ upper)[self.rows]

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight().T

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        lower, upper = self.factors()
        z = y[..., self.inverse_rows].unsqueeze(-2)  # P^T y as a row, (..., 1, D)
        # Rows: a L^T = z solves L a = z; then x U^T = a solves U x = a.
        a = torch.linalg.solve_triangular(lower.T, z, upper=True, left=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper.T, a, upper=False, left=False).squeeze(-2)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sum(log_diag)`` nats, broadcast to ``x.shape[:-1]``."""
        return self.log_diag.sum().expand(x.shape[:-1])


class DiagonalScaling(TransformWeights, TransformModule):
    """NICE's final scaling ``y = x * exp(log_scale)`` (Dinh et al. 2014, sec. 3.3).

    ``log_abs_det_jacobian = sum(log_scale)`` nats, broadcast to ``x.shape[:-1]``. Starts at
    ``log_scale = 0``, the identity.

    Args:
        dim: ``D``, the event size.

    Raises:
        ConfigError: ``dim`` is not a positive integer.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(check_dim(dim)))

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.exp(self.log_scale)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``sum(log_scale)`` nats, broadcast to ``x.shape[:-1]``."""
        return self.log_scale.sum().expand(x.shape[:-1])
