"""Coupling flows: mask + conditioner network -> element-wise map, one class for NICE,
RealNVP and spline coupling.

``y[mask] = x[mask]`` and ``y[~mask] = g(x[~mask]; theta)`` with ``theta`` the conditioner's
output on ``x[mask]`` (and the context), so the Jacobian is triangular and
``log|det| = sum log g'`` (Dinh et al. 2014, 2016; Durkan et al. 2019). The element-wise
maps take their parameters last, ``params (..., D, p)``. Transforms are pytrees (networks
and context are children; mask and element-wise map static), so a list of them inside an
``eqx.Module`` registers with ``numpyro.contrib.module.eqx_module`` and jits. Mirrors
``ppgen.models.pyro.coupling``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from ppgen.models.conventions import check_weights
from ppgen.models.elementwise import (
    check_conditioner_output,
    check_event_shape,
    check_log_scale_bound,
    check_spline,
)
from ppgen.models.masks import check_coupling_mask
from ppgen.models.numpyro.nets import load_net_weights, net_weights
from ppgen.models.numpyro.splines import rational_quadratic_spline

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

    def forward(self, x: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]: ...

    def inverse(self, y: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]: ...


@dataclass(frozen=True)
class Additive:
    """``y = x + t`` (NICE, Dinh et al. 2014); ``params (..., 1) = (t,)``, ``log g' = 0``.

    ``forward(x, params) -> (y, ladj)`` and ``inverse(y, params) -> (x, ladj)``, ``ladj``
    the forward map's element-wise ``log g'(x)`` in both.
    """

    num_params: ClassVar[int] = 1

    def forward(self, x: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = x + params[..., 0]
        return y, jnp.zeros_like(y)

    def inverse(self, y: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = y - params[..., 0]
        return x, jnp.zeros_like(x)


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

    def log_scale(self, params: jax.Array) -> jax.Array:
        """``s = bound tanh(raw / bound)`` from ``params (..., 2)``."""
        return self.log_scale_bound * jnp.tanh(params[..., 1] / self.log_scale_bound)

    def forward(self, x: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.log_scale(params)
        y = x * jnp.exp(s) + params[..., 0]
        return y, jnp.broadcast_to(s, y.shape)

    def inverse(self, y: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.log_scale(params)
        x = (y - params[..., 0]) * jnp.exp(-s)
        return x, jnp.broadcast_to(s, x.shape)


@dataclass(frozen=True)
class RationalQuadraticSpline:
    """Monotone rational-quadratic spline on ``[-bound, bound]``, identity outside (neural
    spline flows, Durkan et al. 2019); ``params (..., 3 bins - 1) = [widths | heights |
    interior derivatives]`` unconstrained (:func:`ppgen.models.numpyro.splines.spline_knots`).
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

    def forward(self, x: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        x, params = _broadcast_params(x, params)
        return rational_quadratic_spline(x, params, self.bins, self.bound)

    def inverse(self, y: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        y, params = _broadcast_params(y, params)
        return rational_quadratic_spline(y, params, self.bins, self.bound, inverse=True)


def _broadcast_params(x: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array]:
    shape = jnp.broadcast_shapes(x.shape, params.shape[:-1])
    return jnp.broadcast_to(x, shape), jnp.broadcast_to(params, (*shape, params.shape[-1]))


def event_constraint(event_dim: int) -> constraints.Constraint:
    """``real_vector`` for vectors (``event_dim`` 1), ``independent(real, 3)`` for images."""
    if event_dim == 1:
        return constraints.real_vector
    return constraints.independent(constraints.real, event_dim)


def broadcast_cat(a: jax.Array, b: jax.Array) -> jax.Array:
    """``concatenate([a, b], -1)`` with the leading dimensions of ``a`` and ``b`` broadcast."""
    batch = jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    a = jnp.broadcast_to(a, (*batch, a.shape[-1]))
    return jnp.concatenate([a, jnp.broadcast_to(b, (*batch, b.shape[-1]))], axis=-1)


def zero_last_layer(net: Any) -> Any:
    """A copy of ``net`` with its output layer set to zero.

    The output layer owns the last key of :func:`net_weights` (an ``MLP``'s last layer,
    ``MADE``'s output layer). A coupling or autoregressive flow whose conditioners output
    zeros is the identity, so a fresh flow starts there (Glow, Kingma & Dhariwal 2018; zuko).
    """
    weights = net_weights(net)
    prefix = list(weights)[-1].rpartition(".")[0]
    zeroed = {
        k: np.zeros_like(v) if k.rpartition(".")[0] == prefix else v for k, v in weights.items()
    }
    return load_net_weights(net, zeroed)


class FusedTransform(Transform):
    """A NumPyro ``Transform`` computing ``(output, forward log|det|)`` in one pass,
    ``call_and_ladj(v, inverse)``, around one network (the field named ``net_name``);
    shared by :class:`Coupling` and ``MaskedAutoregressive``."""

    bijective = True
    net_name: ClassVar[str] = "conditioner"

    def __init__(self) -> None:
        """Nothing to set here (mirrors the Pyro twin, an ``nn.Module`` that needs one)."""
        super().__init__()

    def call_and_ladj(self, x: jax.Array, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def _with_net(self, net: Any) -> Self:
        """This transform around ``net`` instead (same mask, map, context)."""
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.call_and_ladj(x)[0]

    def _inverse(self, y: jax.Array) -> jax.Array:
        return self.call_and_ladj(y, inverse=True)[0]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters as numpy with Pyro's names (``conditioner.layers.0.weight``,
        ``made.layers.0.weight``)."""
        net = getattr(self, self.net_name)
        return {f"{self.net_name}.{k}": v for k, v in net_weights(net).items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> Self:
        """A copy holding ``weights`` (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        prefix = f"{self.net_name}."
        own = {k.removeprefix(prefix): v for k, v in weights.items()}
        return self._with_net(load_net_weights(getattr(self, self.net_name), own))


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
        conditioner: An Equinox network (``MLP``, or a conv net for images).
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
        conditioner: Callable[..., jax.Array],
        elementwise: Elementwise,
        *,
        context: jax.Array | None = None,
    ) -> None:
        mask = check_coupling_mask(mask)
        self.mask_spec = (mask.shape, tuple(bool(b) for b in mask.ravel()))
        self.conditioner = conditioner
        self.elementwise = elementwise
        self.context = context

    @property
    def mask(self) -> np.ndarray:
        """The boolean mask of the event shape, ``True`` = passed through."""
        shape, bits = self.mask_spec
        return np.asarray(bits, dtype=bool).reshape(shape)

    @property
    def domain(self) -> constraints.Constraint:
        return event_constraint(len(self.mask_spec[0]))

    @property
    def codomain(self) -> constraints.Constraint:
        return event_constraint(len(self.mask_spec[0]))

    def tree_flatten(self):
        aux = {"mask_spec": self.mask_spec, "elementwise": self.elementwise}
        return (self.conditioner, self.context), (("conditioner", "context"), aux)

    def condition(self, context: jax.Array) -> Coupling:
        """This coupling with the conditioner also reading ``context (..., C)``."""
        return Coupling(self.mask, self.conditioner, self.elementwise, context=context)

    def _params(self, kept: jax.Array) -> jax.Array:
        """Element-wise parameters from the passed-through part."""
        mask = self.mask
        p = self.elementwise.num_params
        if mask.ndim == 1:
            h = kept if self.context is None else broadcast_cat(kept, self.context)
            out = self.conditioner(h)
            n = int((~mask).sum())
            check_conditioner_output(out.shape[-1], n * p, n, p)
            return out.reshape(*out.shape[:-1], n, p)
        c, height, width = mask.shape
        out = (
            self.conditioner(kept) if self.context is None else self.conditioner(kept, self.context)
        )
        check_conditioner_output(
            tuple(out.shape[-3:]), (c * p, height, width), (c, height, width), p
        )
        return jnp.moveaxis(out.reshape(*out.shape[:-3], c, p, height, width), -3, -1)

    def call_and_ladj(self, x: jax.Array, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
        """``(y, log|det dy/dx|)`` in one pass (``inverse``: ``(x, log|det dy/dx|)`` from
        ``y``); the ladj has shape ``x.shape[:-event_dim]``."""
        mask = self.mask
        check_event_shape(tuple(x.shape), mask.shape, "Coupling")
        fn = self.elementwise.inverse if inverse else self.elementwise.forward
        if mask.ndim == 1:
            keep, change = np.flatnonzero(mask), np.flatnonzero(~mask)
            order = np.argsort(np.concatenate([keep, change]))
            kept = x[..., keep]
            out, ladj = fn(x[..., change], self._params(kept))
            kept = jnp.broadcast_to(kept, (*out.shape[:-1], kept.shape[-1]))
            y = jnp.concatenate([kept, out], axis=-1)[..., order]
            return y, ladj.sum(-1)
        out, ladj = fn(x, self._params(x * mask))
        y = jnp.where(mask, x, out)
        return y, jnp.where(mask, 0.0, ladj).sum((-3, -2, -1))

    def log_abs_det_jacobian(
        self, x: jax.Array, y: jax.Array, intermediates: Any = None
    ) -> jax.Array:
        """``sum log g'`` over the transformed coordinates, shape ``x.shape[:-event_dim]``.

        Computed from ``y`` by the inverse pass, the same computation as
        ``TransformedDistribution.log_prob``'s inverse, which ``jit`` then shares.
        """
        return self.call_and_ladj(y, inverse=True)[1]

    def _with_net(self, net: Any) -> Coupling:
        """This coupling around the conditioner ``net`` instead."""
        return Coupling(self.mask, net, self.elementwise, context=self.context)
