"""Multi-layer perceptron as an Equinox module, the building block of every NumPyro model.

The layout mirrors ``torch.nn.Linear`` (weight ``(out, in)``, bias ``(out,)``, uniform
initialisation on ``[-1/sqrt(in), 1/sqrt(in)]``) so weights copy one to one between backends.
The initial weights are drawn by numpy's seeded generator: building a model runs nothing on
the device (no per-shape compilation of JAX's random kernels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppgen.models.conventions import check_mlp, check_weights

__all__ = ["ACTIVATIONS", "MLP", "load_net_weights", "net_weights"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
}


class MLP(eqx.Module):
    """``h_{l+1} = act(W_l h_l + b_l)``, with no activation after the last layer.

    Unlike ``eqx.nn.MLP`` it maps any leading batch shape, ``(..., sizes[0]) -> (...,
    sizes[-1])``, so a model can push a ``(particles, batch, z)`` sample through it directly.

    Args:
        sizes: Layer widths from input to output, at least two entries.
        activation: One of ``"tanh"``, ``"relu"``, ``"softplus"``, ``"elu"``.
        seed: Seed of the initial weights.

    Raises:
        ConfigError: An unknown activation or fewer than two sizes.
    """

    layers: list[eqx.nn.Linear]
    activation: str = eqx.field(static=True)

    def __init__(self, sizes: Sequence[int], activation: str = "tanh", *, seed: int = 0):
        sizes = check_mlp(sizes, activation)
        rng = np.random.default_rng(seed)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = [_linear(n_in, n_out, rng) for n_in, n_out in pairs]
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            x = x @ layer.weight.T + layer.bias  # (..., out)
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def call_concat(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """``self([a, b])`` for inputs concatenated on the last axis, without building the
        concatenation: the first layer is ``a @ W_a.T + b @ W_b.T + bias``, with the
        leading dims of ``a`` and ``b`` broadcast against each other afterwards.

        When ``b`` varies along a dim ``a`` lacks (M2's ``[x, onehot(y)]`` for every class
        ``y``), ``a @ W_a.T`` is computed once instead of once per value of ``b``.
        """
        first = self.layers[0]
        n_a = a.shape[-1]
        h = a @ first.weight[:, :n_a].T + b @ first.weight[:, n_a:].T + first.bias
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[1:]:
            h = act(h) @ layer.weight.T + layer.bias
        return h

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays under torch's names (``layers.0.weight``, ...)."""
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"layers.{i}.weight"] = np.asarray(layer.weight)
            out[f"layers.{i}.bias"] = np.asarray(layer.bias)
        return out

    def load_state_dict(self, weights: dict[str, np.ndarray]) -> MLP:
        """A copy of this MLP holding ``weights`` (same keys and shapes as :meth:`state_dict`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        expected = self.state_dict()
        check_weights(expected, weights)
        layers = [
            eqx.tree_at(
                lambda lin: (lin.weight, lin.bias),
                layer,
                tuple(
                    jnp.asarray(weights[f"layers.{i}.{k}"], dtype=getattr(layer, k).dtype)
                    for k in ("weight", "bias")
                ),
            )
            for i, layer in enumerate(self.layers)
        ]
        return eqx.tree_at(lambda m: m.layers, self, layers)


def _linear(n_in: int, n_out: int, rng: np.random.Generator) -> eqx.nn.Linear:
    """``eqx.nn.Linear`` with torch's default init drawn by numpy (no device work at all)."""
    skeleton = eqx.filter_eval_shape(eqx.nn.Linear, n_in, n_out, key=jax.random.PRNGKey(0))
    bound = 1.0 / np.sqrt(n_in)
    dtype = skeleton.weight.dtype
    weight = jnp.asarray(rng.uniform(-bound, bound, (n_out, n_in)), dtype=dtype)
    bias = jnp.asarray(rng.uniform(-bound, bound, n_out), dtype=dtype)
    return eqx.tree_at(lambda lin: (lin.weight, lin.bias), skeleton, (weight, bias))


def net_weights(net: Any) -> dict[str, np.ndarray]:
    """Any Equinox network's weights as numpy under torch's names: its ``state_dict()``
    (``MLP``, ``MADE``, ...), else every array leaf under its tree path
    (``layers[0].weight``)."""
    if hasattr(net, "state_dict"):
        return net.state_dict()
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(net, eqx.is_array))[0]
    return {jax.tree_util.keystr(path).lstrip("."): np.asarray(v) for path, v in leaves}


def load_net_weights(net: Any, weights: Mapping[str, np.ndarray]) -> Any:
    """A copy of ``net`` holding ``weights`` (keys and shapes of :func:`net_weights`).

    Raises:
        CheckpointError: Missing or unexpected keys, or a shape mismatch.
    """
    if hasattr(net, "load_state_dict"):
        return net.load_state_dict(weights)
    check_weights(net_weights(net), weights)
    params, static = eqx.partition(net, eqx.is_array)
    paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = [
        jnp.asarray(weights[jax.tree_util.keystr(path).lstrip(".")], dtype=leaf.dtype)
        for path, leaf in paths
    ]
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)
