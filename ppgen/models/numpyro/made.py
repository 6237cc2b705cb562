"""MADE: a masked autoencoder whose output ``i`` depends only on the inputs before ``i``.

Germain et al. 2015. Each weight matrix is multiplied by a fixed binary mask
(:func:`ppgen.models.masks.made_masks`, in numpy, the same on both backends), so
``out[..., i, :]`` is a function of ``x[..., j]`` for ``order[j] < order[i]`` (and of the
context) only: the conditioner of MAF/IAF (Papamakarios et al. 2017; Kingma et al. 2016)
and, with ``num_params`` logits per input, an autoregressive density model. An Equinox
module; the masks are rebuilt from static sizes (cached numpy), never trained. Mirrors
``ppgen.models.pyro.made``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppgen.errors import ConfigError
from ppgen.models.conventions import check_mlp, check_weights
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import check_order, made_initial_weights, made_masks
from ppgen.models.numpyro.nets import ACTIVATIONS

__all__ = ["MADE"]


class MADE(eqx.Module):
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

    weights: list[jax.Array]
    biases: list[jax.Array]
    context_weight: jax.Array | None
    input_dim: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)

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
        masks = made_masks(input_dim, hidden, num_params, order, context=bool(context_dim))
        check_mlp([input_dim, *hidden, num_params], activation)
        if isinstance(context_dim, bool) or int(context_dim) < 0:
            raise ConfigError(f"context_dim must be an integer >= 0, got {context_dim!r}")
        self.input_dim, self.num_params, self.context_dim = (
            int(input_dim),
            int(num_params),
            int(context_dim),
        )
        self.hidden = tuple(int(h) for h in hidden)
        self.order = check_order(input_dim, order)
        self.activation = activation
        w = made_initial_weights(input_dim, hidden, num_params, context_dim, seed)
        dtype = jnp.result_type(float)  # JAX's default float (float64 under x64)
        self.weights = [jnp.asarray(w[f"layers.{i}.weight"], dtype) for i in range(len(masks))]
        self.biases = [jnp.asarray(w[f"layers.{i}.bias"], dtype) for i in range(len(masks))]
        self.context_weight = jnp.asarray(w["context.weight"], dtype) if context_dim else None

    def masks(self) -> list[np.ndarray]:
        """The boolean masks, ``(out, in)`` per layer."""
        return made_masks(
            self.input_dim, self.hidden, self.num_params, self.order, context=self.context_dim > 0
        )

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
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
        act = ACTIVATIONS[self.activation]
        h = x
        last = len(self.weights) - 1
        for i, (w, b, mask) in enumerate(zip(self.weights, self.biases, self.masks(), strict=True)):
            h = h @ jnp.where(mask, w, 0.0).T + b
            if i == 0 and context is not None:
                h = h + context @ self.context_weight.T
            if i < last:
                h = act(h)
        return h.reshape(*h.shape[:-1], self.input_dim, self.num_params)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy under Pyro's names (``context.weight``, ``layers.0.weight``,
        ...; torch layout ``(out, in)``), the output layer last."""
        out = {}
        if self.context_weight is not None:
            out["context.weight"] = np.asarray(self.context_weight)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"layers.{i}.weight"] = np.asarray(w)
            out[f"layers.{i}.bias"] = np.asarray(b)
        return out

    def load_state_dict(self, weights: Mapping[str, np.ndarray]) -> MADE:
        """A copy holding ``weights`` (keys and shapes as :meth:`state_dict`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.state_dict(), weights)
        n = len(self.weights)
        new = (
            [jnp.asarray(weights[f"layers.{i}.weight"], self.weights[i].dtype) for i in range(n)],
            [jnp.asarray(weights[f"layers.{i}.bias"], self.biases[i].dtype) for i in range(n)],
        )
        made = eqx.tree_at(lambda m: (m.weights, m.biases), self, new)
        if self.context_weight is not None:
            cw = jnp.asarray(weights["context.weight"], self.context_weight.dtype)
            made = eqx.tree_at(lambda m: m.context_weight, made, cw)
        return made

    def get_weights(self) -> dict[str, np.ndarray]:
        """The same as :meth:`state_dict` (the name every ppgen transform answers to)."""
        return self.state_dict()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> MADE:
        """The same as :meth:`load_state_dict`: a copy holding ``weights``."""
        return self.load_state_dict(weights)
