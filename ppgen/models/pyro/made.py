"""MADE: a masked autoencoder whose output ``i`` depends only on the inputs before ``i``.

Germain et al. 2015. Each weight matrix is multiplied by a fixed binary mask
(:func:`ppgen.models.masks.made_masks`, in numpy, the same on both backends), so
``out[..., i, :]`` is a function of ``x[..., j]`` for ``order[j] < order[i]`` (and of the
context) only: the conditioner of MAF/IAF (Papamakarios et al. 2017; Kingma et al. 2016)
and, with ``num_params`` logits per input, an autoregressive density model. Mirrors
``ppgen.models.numpyro.made``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppgen.errors import ConfigError
from ppgen.models.conventions import check_mlp
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import check_order, made_initial_weights, made_masks
from ppgen.models.pyro.nets import ACTIVATIONS
from ppgen.models.pyro.params import get_weights, set_weights

__all__ = ["MADE"]


class MADE(nn.Module):
    """``(..., D) -> (..., D, num_params)``, autoregressive in ``order``.

    Hidden layers ``h_l = act((W_l * M_l) h_{l-1} + b_l)`` (the first also adds
    ``W_c context``, connected to every hidden unit), output ``(W_L * M_L) h + b_L`` read
    as ``(..., D, num_params)``: output unit ``i * num_params + j`` is parameter ``j`` of
    input ``i``. The output layer starts at zero (a fresh MADE outputs zeros). With a
    context, hidden units of degree 0 see only the context, so every output depends on it
    (:func:`ppgen.models.masks.made_degrees`).

    Args:
        input_dim: ``D``.
        hidden: Widths of the hidden layers (at least one).
        num_params: Outputs per input.
        context_dim: Width of the context input (0: none).
        order: ``order[i]`` is the position at which input ``i`` is generated, a
            permutation of ``range(D)``; ``None`` for ``0, 1, ..., D - 1``.
        activation: One of ``"tanh"``, ``"relu"``, ``"softplus"``, ``"elu"``.
        seed: Seed of the initial weights (numpy's generator, the same on both backends).

    Raises:
        ConfigError: A bad width, order, activation or ``context_dim``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        num_params: int,
        context_dim: int = 0,
        order: Sequence[int] | None = None,
        activation: str = "relu",
        seed: int = 0,
    ) -> None:
        super().__init__()
        masks = made_masks(input_dim, hidden, num_params, order, context=bool(context_dim))
        check_mlp([input_dim, *hidden, num_params], activation)
        if isinstance(context_dim, bool) or int(context_dim) < 0:
            raise ConfigError(f"context_dim must be an integer >= 0, got {context_dim!r}")
        self.input_dim, self.num_params, self.context_dim = (
            int(input_dim),
            int(num_params),
            int(context_dim),
        )
        self.order = check_order(input_dim, order)
        self.activation = ACTIVATIONS[activation]()
        weights = made_initial_weights(input_dim, hidden, num_params, context_dim, seed)
        # skip_init: allocate without touching torch's global generator; filled below.
        if self.context_dim:  # registered first: the output layer owns the last parameters
            self.context = nn.utils.skip_init(
                nn.Linear, self.context_dim, masks[0].shape[0], bias=False
            )
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, m.shape[1], m.shape[0]) for m in masks
        )
        for i, m in enumerate(masks):
            self.register_buffer(f"mask_{i}", torch.tensor(m), persistent=False)
        set_weights(self, weights)

    def masks(self) -> list[torch.Tensor]:
        """The boolean masks, ``(out, in)`` per layer."""
        return [getattr(self, f"mask_{i}") for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``(..., D)`` (and ``context (..., C)``, leading dims broadcast) -> ``(..., D, p)``.

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context given to a MADE built without one, or the reverse.
        """
        check_event_shape(tuple(x.shape), (self.input_dim,), "MADE")
        if (context is None) != (self.context_dim == 0):
            raise ConfigError(
                f"this MADE was built with context_dim={self.context_dim}; "
                + ("pass a context" if context is None else "it takes no context")
            )
        h = x
        for i, (layer, mask) in enumerate(zip(self.layers, self.masks(), strict=True)):
            h = F.linear(h, torch.where(mask, layer.weight, 0.0), layer.bias)
            if i == 0 and context is not None:
                h = h + self.context(context)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        return h.reshape(*h.shape[:-1], self.input_dim, self.num_params)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters as numpy (``layers.0.weight`` ``(out, in)``, ``context.weight``)."""
        return get_weights(self)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> MADE:
        """Copy ``weights`` (as :meth:`get_weights`) in place; return ``self``.

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        set_weights(self, weights)
        return self
