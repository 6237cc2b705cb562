"""Multilayer perceptrons, initialised from an explicit seed.

The layers are initialised as :class:`torch.nn.Linear` does by default (weights and biases
uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, He et al. 2015 with ``a = sqrt(5)``), but
from a local :class:`torch.Generator`, so building a network neither reads nor advances
torch's global random state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ppgen.models.conventions import check_mlp
from ppgen.models.pyro.params import get_weights, set_weights

__all__ = ["ACTIVATIONS", "MLP", "load_net_weights", "net_weights"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


class MLP(nn.Module):
    """A stack of affine layers with an activation between them and none after the last.

    ``h_0 = x``, ``h_l = act(W_l h_{l-1} + b_l)`` for hidden layers, output ``W_L h_{L-1} + b_L``.

    Args:
        sizes: Layer widths ``(in, hidden..., out)``; at least two entries.
        activation: One of ``"tanh"``, ``"relu"``, ``"softplus"``, ``"elu"``.
        seed: Seed of the local generator that draws the initial weights.

    Raises:
        ConfigError: Unknown activation or fewer than two positive sizes.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", *, seed: int = 0) -> None:
        super().__init__()
        sizes = check_mlp(sizes, activation)
        self.activation = ACTIVATIONS[activation]()
        generator = torch.Generator().manual_seed(int(seed))
        layers = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            # skip_init: allocate without touching the global RNG, then fill from `generator`.
            layer = nn.utils.skip_init(nn.Linear, fan_in, fan_out)
            bound = 1.0 / math.sqrt(fan_in)
            with torch.no_grad():
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
            layers.append(layer)
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to the last axis of ``x`` (any leading batch shape)."""
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(layer(x))
        return last(x)

    def call_concat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``self(cat([a, b], -1))`` without building the concatenation: the first layer is
        ``a @ W_a.T + b @ W_b.T + bias``, the leading dims of ``a`` and ``b`` broadcast.

        When ``b`` varies along a dim ``a`` lacks (M2's ``[x, onehot(y)]`` for every class
        under enumeration), ``a @ W_a.T`` is computed once instead of once per value of ``b``.
        """
        first, *rest = self.layers
        n_a = a.shape[-1]
        h = a @ first.weight[:, :n_a].T + b @ first.weight[:, n_a:].T + first.bias
        for layer in rest:
            h = layer(self.activation(h))
        return h


def net_weights(net: nn.Module) -> dict[str, np.ndarray]:
    """Any network's parameters as numpy, keyed by ``named_parameters`` name (torch layout,
    ``layers.0.weight``); the mirror of NumPyro's ``net_weights``."""
    return get_weights(net)


def load_net_weights(net: nn.Module, weights: Mapping[str, np.ndarray]) -> nn.Module:
    """Copy ``weights`` (keys and shapes of :func:`net_weights`) into ``net``; return it.

    Raises:
        CheckpointError: Missing or unexpected keys, or a shape mismatch.
    """
    set_weights(net, weights)
    return net
