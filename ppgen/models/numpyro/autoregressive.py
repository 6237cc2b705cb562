"""Masked autoregressive flows: MADE conditioner -> element-wise map, MAF or IAF by direction.

``y_i = g(x_i; theta_i)`` with ``theta_i`` a function of the *data-side* values before
``i``: MAF (Papamakarios et al. 2017) reads them from ``y`` (the forward map's output:
density evaluation, the inverse, is one pass, sampling ``D`` passes); IAF (Kingma et al.
2016) from ``x`` (the noise: sampling one pass, the inverse ``D``). With
:class:`~ppgen.models.numpyro.coupling.Affine` these are the affine MAF/IAF, with
:class:`~ppgen.models.numpyro.coupling.RationalQuadraticSpline` the spline autoregressive
flow of Durkan et al. 2019. A pytree (MADE and context children), so it jits and registers
with ``eqx_module``. Mirrors ``ppgen.models.pyro.autoregressive``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from numpyro.distributions import constraints

from ppgen.models.elementwise import check_autoregressive, check_event_shape
from ppgen.models.numpyro.coupling import Elementwise, FusedTransform
from ppgen.models.numpyro.made import MADE

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(FusedTransform):
    """An autoregressive flow layer, ``x (noise side) -> y (data side)``.

    Args:
        made: The conditioner, a :class:`~ppgen.models.numpyro.made.MADE` with
            ``num_params`` equal to the element-wise map's (and the context's width, if
            conditional).
        elementwise: ``Affine()``, ``RationalQuadraticSpline(...)`` or ``Additive()``.
        direction: ``"maf"`` (parameters from ``y``) or ``"iaf"`` (from ``x``).
        context: The context this transform is conditioned on; use :meth:`condition`.

    Raises:
        ConfigError: An unknown direction, or a MADE whose ``num_params`` is not the map's.
        DataError: (when called) an input that does not end in ``D``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    net_name = "made"

    def __init__(
        self,
        made: MADE,
        elementwise: Elementwise,
        direction: str = "maf",
        *,
        context: jax.Array | None = None,
    ) -> None:
        self.direction = check_autoregressive(direction, made.num_params, elementwise.num_params)
        self.made = made
        self.elementwise = elementwise
        self.context = context

    def tree_flatten(self):
        aux = {"elementwise": self.elementwise, "direction": self.direction}
        return (self.made, self.context), (("made", "context"), aux)

    def condition(self, context: jax.Array) -> MaskedAutoregressive:
        """This layer with MADE reading ``context (..., C)`` (the same network)."""
        return MaskedAutoregressive(self.made, self.elementwise, self.direction, context=context)

    def call_and_ladj(self, v: jax.Array, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
        """``(y, log|det dy/dx|)`` (``inverse``: ``(x, log|det dy/dx|)`` from ``y``), the
        ladj of shape ``v.shape[:-1]``."""
        dim = self.made.input_dim
        check_event_shape(tuple(v.shape), (dim,), "MaskedAutoregressive")
        fn = self.elementwise.inverse if inverse else self.elementwise.forward
        if (self.direction == "maf") == inverse:  # the parameters come from the input side
            out, ladj = fn(v, self.made(v, self.context))
            return out, ladj.sum(-1)
        # Parameters come from the output side: after pass k the outputs at positions < k
        # are exact, so D passes give them all (the last pass's parameters are exact too).
        batch = v.shape[:-1]
        if self.context is not None:
            batch = jnp.broadcast_shapes(batch, self.context.shape[:-1])
        out = jnp.zeros((*batch, dim), dtype=v.dtype)
        out = jax.lax.fori_loop(
            0, dim - 1, lambda _, o: fn(v, self.made(o, self.context))[0].astype(v.dtype), out
        )
        out, ladj = fn(v, self.made(out, self.context))
        return out, ladj.sum(-1)

    def log_abs_det_jacobian(
        self, x: jax.Array, y: jax.Array, intermediates: Any = None
    ) -> jax.Array:
        """``sum_i log g'(x_i; theta_i)``, shape ``x.shape[:-1]``: one MADE pass on the
        parameters' side (``y`` for MAF, ``x`` for IAF)."""
        src = y if self.direction == "maf" else x
        return self.elementwise.forward(x, self.made(src, self.context))[1].sum(-1)

    def replace_net(self, net: MADE) -> MaskedAutoregressive:
        """This layer around the MADE ``net`` instead."""
        return MaskedAutoregressive(net, self.elementwise, self.direction, context=self.context)
