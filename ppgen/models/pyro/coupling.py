"""Coupling flows: mask + conditioner network -> element-wise map, one class for NICE,
RealNVP and spline coupling.

``y[mask] = x[mask]`` and ``y[~mask] = g(x[~mask]; theta)`` with ``theta`` the conditioner's
output on ``x[mask]`` (and the context), so the Jacobian is triangular and
``log|det| = sum log g'`` (Dinh et al. 2014, 2016; Durkan et al. 2019). The element-wise
maps take their parameters last, ``params (..., D, p)``. Mirrors
``ppgen.models.numpyro.coupling``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch
from pyro.distributions import constraints
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from ppgen.models.elementwise import (
    check_conditioner_output,
    check_event_shape,
    check_log_scale_bound,
    check_spline,
)
from ppgen.models.masks import check_coupling_mask
from ppgen.models.pyro.params import ModuleWeights
from ppgen.models.pyro.splines import rational_quadratic_spline

__all__ = [
    "Additive",
    "Affine",
    "Coupling",
    "Elementwise",
    "FusedTransform",
    "RationalQuadraticSpline",
    "broadcast_cat",
    "event_constraint",
    "zero_last_layer",
]


class Elementwise(Protocol):
    """An element-wise monotone map ``y = g(x; params)`` with ``num_params`` per element."""

    num_params: int

    def forward(
        self, x: torch.Tensor, params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def inverse(
        self, y: torch.Tensor, params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class Additive:
    """``y = x + t`` (NICE, Dinh et al. 2014); ``params (..., 1) = (t,)``, ``log g' = 0``.

    ``forward(x, params) -> (y, ladj)`` and ``inverse(y, params) -> (x, ladj)``, ``ladj``
    the forward map's element-wise ``log g'(x)`` in both.
    """

    num_params: ClassVar[int] = 1

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x + params[..., 0]
        return y, torch.zeros_like(y)

    def inverse(self, y: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = y - params[..., 0]
        return x, torch.zeros_like(x)


@dataclass(frozen=True)
class Affine:
    """``y = x exp(s) + t`` with ``s = bound tanh(raw / bound)`` (RealNVP, Dinh et al. 2016;
    MAF, IAF); ``params (..., 2) = (t, raw)``, ``log g' = s``.

    The soft clamp keeps ``|s| < bound``, so no step can blow a scale up (as in Glow's and
    zuko's implementations). See :class:`Additive` for the methods.

    Raises:
        ConfigError: ``log_scale_bound`` not a finite number > 0.
    """

    log_scale_bound: float = 3.0
    num_params: ClassVar[int] = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "log_scale_bound", check_log_scale_bound(self.log_scale_bound))

    def log_scale(self, params: torch.Tensor) -> torch.Tensor:
        """``s = bound tanh(raw / bound)`` from ``params (..., 2)``."""
        return self.log_scale_bound * torch.tanh(params[..., 1] / self.log_scale_bound)

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.log_scale(params)
        y = x * torch.exp(s) + params[..., 0]
        return y, s.expand_as(y)

    def inverse(self, y: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.log_scale(params)
        x = (y - params[..., 0]) * torch.exp(-s)
        return x, s.expand_as(x)


@dataclass(frozen=True)
class RationalQuadraticSpline:
    """Monotone rational-quadratic spline on ``[-bound, bound]``, identity outside (neural
    spline flows, Durkan et al. 2019); ``params (..., 3 bins - 1) = [widths | heights |
    interior derivatives]`` unconstrained (:func:`ppgen.models.pyro.splines.spline_knots`).
    See :class:`Additive` for the methods.

    Raises:
        ConfigError: ``bins < 1`` or ``bound <= 0``.
    """

    bins: int = 8
    bound: float = 5.0

    def __post_init__(self) -> None:
        bins, bound = check_spline(self.bins, self.bound)
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "bound", bound)

    @property
    def num_params(self) -> int:
        return 3 * self.bins - 1

    def forward(self, x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, params = _broadcast_params(x, params)
        return rational_quadratic_spline(x, params, self.bins, self.bound)

    def inverse(self, y: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, params = _broadcast_params(y, params)
        return rational_quadratic_spline(y, params, self.bins, self.bound, inverse=True)


def _broadcast_params(x: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = torch.broadcast_shapes(x.shape, params.shape[:-1])
    return x.expand(shape), params.expand(*shape, params.shape[-1])


def event_constraint(event_dim: int) -> constraints.Constraint:
    """``real_vector`` for vectors (``event_dim`` 1), ``independent(real, 3)`` for images."""
    if event_dim == 1:
        return constraints.real_vector
    return constraints.independent(constraints.real, event_dim)


def broadcast_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``cat([a, b], -1)`` with the leading dimensions of ``a`` and ``b`` broadcast."""
    batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    return torch.cat([a.expand(*batch, a.shape[-1]), b.expand(*batch, b.shape[-1])], dim=-1)


def zero_last_layer(net: nn.Module) -> nn.Module:
    """Set the output layer of ``net`` to zero, in place; return ``net``.

    The output layer is the module owning the last entry of ``named_parameters()`` (an
    ``MLP``'s last ``Linear``, ``MADE``'s output layer). A coupling or autoregressive flow
    whose conditioners output zeros is the identity, so a fresh flow starts there (Glow,
    Kingma & Dhariwal 2018; zuko).
    """
    names = [name for name, _ in net.named_parameters()]
    prefix = names[-1].rpartition(".")[0]
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.rpartition(".")[0] == prefix:
                p.zero_()
    return net


class FusedTransform(ModuleWeights, TransformModule):
    """A ``TransformModule`` computing ``(output, forward log|det|)`` in one pass,
    ``_transform(v, inverse)``, shared by :class:`Coupling` and ``MaskedAutoregressive``.

    ``log_abs_det_jacobian(x, y)`` reuses the value of the last call or inverse on these
    very tensors (``TransformedDistribution.log_prob`` asks right after the inverse), else
    computes ``_ladj(x, y)``.
    """

    bijective = True

    def __init__(self) -> None:
        super().__init__(cache_size=0)
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def __getstate__(self) -> dict:
        # The cached tensors carry an autograd graph, which deepcopy and pickle refuse.
        return {**super().__getstate__(), "_last": None}

    def _transform(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _ladj(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._transform(x, inverse=False)[1]

    def call_and_ladj(
        self, x: torch.Tensor, inverse: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, log|det dy/dx|)`` in one pass (``inverse``: ``(x, log|det dy/dx|)`` from
        ``y``); the ladj has shape ``x.shape[:-event_dim]``."""
        out, ladj = self._transform(x, inverse)
        self._last = (out, x, ladj) if inverse else (x, out, ladj)
        return out, ladj

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return self.call_and_ladj(y, inverse=True)[0]

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log|det dy/dx|``, shape ``x.shape[:-event_dim]``."""
        if self._last is not None and self._last[0] is x and self._last[1] is y:
            return self._last[2]
        return self._ladj(x, y)


class Coupling(FusedTransform):
    """One coupling layer: ``y = x`` where ``mask``, ``y = g(x; theta)`` elsewhere.

    Vectors (``mask`` of shape ``(D,)``): the conditioner reads ``x[..., mask]`` (with the
    context concatenated when conditioned) and outputs ``(..., n * p)``, read as
    ``(..., n, p)`` for the ``n = sum(~mask)`` transformed coordinates in order. Images
    (``mask`` of shape ``(C, H, W)``): it reads ``x * mask`` (and the context as a second
    argument) and outputs ``(..., C * p, H, W)``, channel ``c * p + j`` being parameter
    ``j`` of channel ``c``. With :class:`Additive` this is NICE's coupling (Dinh et al.
    2014), with :class:`Affine` RealNVP's (Dinh et al. 2016), with
    :class:`RationalQuadraticSpline` the spline coupling of Durkan et al. 2019.

    Args:
        mask: Boolean numpy array of the event shape, ``True`` = passed through.
        conditioner: A network (``MLP``, or a conv net for images).
        elementwise: :class:`Additive`, :class:`Affine` or :class:`RationalQuadraticSpline`.
        context: The context this transform is conditioned on; use :meth:`condition`.

    Raises:
        ConfigError: A mask that is not boolean, not 1-D or 3-D, or all one value; (when
            called) a conditioner whose output does not have ``n * p`` values.
        DataError: (when called) an input whose trailing shape is not the mask's.
    """

    def __init__(
        self,
        mask: np.ndarray,
        conditioner: Callable[..., torch.Tensor],
        elementwise: Elementwise,
        *,
        context: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.mask = check_coupling_mask(mask)
        self.conditioner = conditioner
        self.elementwise = elementwise
        self.context = context
        if self.mask.ndim == 1:
            keep, change = np.flatnonzero(self.mask), np.flatnonzero(~self.mask)
            self._keep, self._change = torch.as_tensor(keep), torch.as_tensor(change)
            self._order = torch.as_tensor(np.argsort(np.concatenate([keep, change])))

    @property
    def domain(self) -> constraints.Constraint:
        return event_constraint(self.mask.ndim)

    @property
    def codomain(self) -> constraints.Constraint:
        return event_constraint(self.mask.ndim)

    def condition(self, context: torch.Tensor) -> Coupling:
        """This coupling with the conditioner also reading ``context (..., C)`` (the same
        networks: gradients reach this module's parameters)."""
        return Coupling(self.mask, self.conditioner, self.elementwise, context=context)

    def _params(self, kept: torch.Tensor) -> torch.Tensor:
        """Element-wise parameters from the passed-through part."""
        p = self.elementwise.num_params
        if self.mask.ndim == 1:
            h = kept if self.context is None else broadcast_cat(kept, self.context)
            out = self.conditioner(h)
            n = len(self._change)
            check_conditioner_output(out.shape[-1], n * p, n, p)
            return out.reshape(*out.shape[:-1], n, p)
        c, height, width = self.mask.shape
        out = (
            self.conditioner(kept) if self.context is None else self.conditioner(kept, self.context)
        )
        check_conditioner_output(
            tuple(out.shape[-3:]), (c * p, height, width), (c, height, width), p
        )
        return out.reshape(*out.shape[:-3], c, p, height, width).movedim(-3, -1)

    def _transform(self, x: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, ladj)`` (``inverse``: ``(x, ladj)`` from ``y``), ``ladj`` of the forward."""
        check_event_shape(tuple(x.shape), self.mask.shape, "Coupling")
        fn = self.elementwise.inverse if inverse else self.elementwise.forward
        if self.mask.ndim == 1:
            kept, changed = x[..., self._keep], x[..., self._change]
            out, ladj = fn(changed, self._params(kept))
            batch = torch.broadcast_shapes(kept.shape[:-1], out.shape[:-1])
            kept = kept.expand(*batch, kept.shape[-1])
            y = torch.cat([kept, out], dim=-1)[..., self._order]
            return y, ladj.sum(-1)
        mask = torch.as_tensor(self.mask, device=x.device)
        out, ladj = fn(x, self._params(x * mask))
        y = torch.where(mask, x, out)
        return y, torch.where(mask, torch.zeros_like(ladj), ladj).sum((-3, -2, -1))
