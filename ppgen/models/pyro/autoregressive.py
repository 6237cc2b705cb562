"""Masked autoregressive flows: MADE conditioner -> element-wise map, MAF or IAF by direction.

``y_i = g(x_i; theta_i)`` with ``theta_i`` a function of the *data-side* values before
``i``: MAF (Papamakarios et al. 2017) reads them from ``y`` (the forward map's output:
density evaluation, the inverse, is one pass, sampling ``D`` passes); IAF (Kingma et al.
2016) from ``x`` (the noise: sampling one pass, the inverse ``D``). With
:class:`~ppgen.models.pyro.coupling.Affine` these are the affine MAF/IAF, with
:class:`~ppgen.models.pyro.coupling.RationalQuadraticSpline` the spline autoregressive flow
of Durkan et al. 2019. Mirrors ``ppgen.models.numpyro.autoregressive``.
"""

from __future__ import annotations

import torch
from pyro.distributions import constraints

from ppgen.models.elementwise import check_autoregressive, check_event_shape
from ppgen.models.pyro.coupling import Elementwise, FusedTransform
from ppgen.models.pyro.made import MADE

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(FusedTransform):
    """An autoregressive flow layer, ``x (noise side) -> y (data side)``.

    Args:
        made: The conditioner, a :class:`~ppgen.models.pyro.made.MADE` with ``num_params``
            equal to the element-wise map's (and the context's width, if conditional).
        elementwise: ``Affine()``, ``RationalQuadraticSpline(...)`` or ``Additive()``.
        direction: ``"maf"`` (parameters from ``y``) or ``"iaf"`` (from ``x``).
        context: The context this transform is conditioned on; use :meth:`condition`.

    Raises:
        ConfigError: An unknown direction, or a MADE whose ``num_params`` is not the map's.
        DataError: (when called) an input that does not end in ``D``.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(
        self,
        made: MADE,
        elementwise: Elementwise,
        direction: str = "maf",
        *,
        context: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.direction = check_autoregressive(direction, made.num_params, elementwise.num_params)
        self.made = made
        self.elementwise = elementwise
        self.context = context

    def condition(self, context: torch.Tensor) -> MaskedAutoregressive:
        """This layer with MADE reading ``context (..., C)`` (the same network)."""
        return MaskedAutoregressive(self.made, self.elementwise, self.direction, context=context)

    def _transform(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward (``inverse``: backward) map of ``v`` and the forward ``log|det|``."""
        check_event_shape(tuple(v.shape), (self.made.input_dim,), "MaskedAutoregressive")
        fn = self.elementwise.inverse if inverse else self.elementwise.forward
        one_pass = (self.direction == "maf") == inverse
        if one_pass:  # the parameters come from the input side
            out, ladj = fn(v, self.made(v, self.context))
            return out, ladj.sum(-1)
        # Parameters come from the output side: after pass k the outputs at positions < k
        # are exact, so D passes give them all (the last pass's parameters are exact too).
        batch = v.shape[:-1]
        if self.context is not None:
            batch = torch.broadcast_shapes(batch, self.context.shape[:-1])
        out = torch.zeros(*batch, v.shape[-1], dtype=v.dtype, device=v.device)
        for _ in range(self.made.input_dim):
            out, ladj = fn(v, self.made(out, self.context))
        return out, ladj.sum(-1)

    def _ladj(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One MADE pass on the parameters' side (``y`` for MAF, ``x`` for IAF)."""
        src = y if self.direction == "maf" else x
        return self.elementwise.forward(x, self.made(src, self.context))[1].sum(-1)
