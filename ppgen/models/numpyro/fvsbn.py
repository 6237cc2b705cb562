"""FVSBN: the fully visible sigmoid belief network, one logistic regression per entry.

``p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j)`` (Neal 1992; Frey 1998; the
baseline of Larochelle & Murray 2011, table 2). The efficient form is one matmul with the
strictly lower-triangular mask (:func:`ppgen.models.masks.fvsbn_mask`); the plated form is
the ``D`` logistic regressions, one sample site each. An Equinox module. Mirrors
``ppgen.models.pyro.fvsbn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppgen.models.ar_dense import check_head, check_no_context
from ppgen.models.conventions import check_weights
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import fvsbn_initial_weights, fvsbn_mask
from ppgen.models.numpyro.ar_dense import observe, sample_in_order

__all__ = ["FVSBN"]


class FVSBN(eqx.Module):
    """``x (*batch, D)`` (floats 0/1) ``-> logits (*batch, D, 1)``, autoregressive in
    ``0, 1, ..., D - 1``; for the Bernoulli head only.

    Weights (torch layout): ``weight`` ``(D, D)`` (only its strictly lower triangle is
    used), ``bias`` ``(D,)``.

    Args:
        dim: ``D``, the number of binary entries.
        seed: Seed of the initial weights (numpy, the same on both backends).

    Raises:
        ConfigError: ``dim`` not a positive integer.
    """

    weight: jax.Array
    bias: jax.Array
    dim: int = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, dim: int, seed: int = 0) -> None:
        weights = fvsbn_initial_weights(dim, seed)
        self.dim = int(dim)
        self.num_params = 1
        self.event_shape = (self.dim,)
        self.order = tuple(range(self.dim))
        dtype = jnp.result_type(float)  # JAX's default float (float64 under x64)
        self.weight = jnp.asarray(weights["weight"], dtype)
        self.bias = jnp.asarray(weights["bias"], dtype)

    def masked_weight(self) -> jax.Array:
        """``W`` with zeros on and above the diagonal, ``(D, D)``."""
        return jnp.where(fvsbn_mask(self.dim), self.weight, 0.0)

    def __call__(self, x: jax.Array, context: None = None) -> jax.Array:
        """All ``D`` logits in one pass: ``(*batch, D) -> (*batch, D, 1)``.

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context (FVSBN is unconditional).
        """
        check_event_shape(tuple(x.shape), self.event_shape, "FVSBN")
        check_no_context("FVSBN", context)
        x = jnp.asarray(x, self.weight.dtype)
        return (x @ self.masked_weight().T + self.bias)[..., None]

    def sample(
        self,
        noise: jax.Array,
        head: Any,
        context: None = None,
        cached: bool = True,
        prefix: tuple[jax.Array, int] | None = None,
    ) -> jax.Array:
        """Draw ``x (*batch, D)`` entry by entry from ``noise (*batch, D)`` (uniforms).

        ``cached=True`` computes logit ``i`` alone (one row of ``W``, ``O(D)`` per entry);
        ``cached=False`` runs the whole forward pass per entry (the reference). Both give
        the same ``x`` for the same noise. Jit-friendly (one ``lax.fori_loop``).

        Args:
            noise: Uniforms ``(*batch, D)`` (``ar.uniform_noise``).
            head: The Bernoulli head.
            context: Must be ``None``.
            cached: The fast sampler (default) or the naive one.
            prefix: ``(x_given (*batch, D), count)``: keep the first ``count`` entries.

        Raises:
            ConfigError: Another head, or a context.
            DataError: Noise or prefix of the wrong shape.
        """
        check_head("FVSBN", head, 1, bernoulli_only=True)
        check_no_context("FVSBN", context)
        noise = jnp.asarray(noise, self.weight.dtype)
        w = self.masked_weight()
        step = (lambda _, x, i: (self.bias[i] + x @ w[i])[..., None], lambda c, i, xi: c, None)
        return sample_in_order(self, noise, head, context, prefix, step if cached else None)

    def plated(self, x: jax.Array | None, head: Any, context: None = None) -> jax.Array:
        """The plated-conditional form, inside the ``"data"`` plate: for ``i = 0..D-1`` the
        logistic regression ``x_i ~ Bernoulli(sigmoid(b_i + W[i, :i] x_{:i}))``, site
        ``x_{i}``, observed at ``x[..., i]`` (drawn when ``x`` is ``None``).

        Returns:
            ``x (*batch, D)``, the observed or drawn values.

        Raises:
            ConfigError: Another head, or a context.
            DataError: ``x`` does not end in ``D``.
        """
        check_head("FVSBN", head, 1, bernoulli_only=True)
        check_no_context("FVSBN", context)
        if x is not None:
            check_event_shape(tuple(x.shape), self.event_shape, "FVSBN")
            x = jnp.asarray(x, self.weight.dtype)
        values = []
        for i in range(self.dim):
            logit = self.bias[i]
            if i > 0:
                logit = logit + jnp.stack(values, -1) @ self.weight[i, :i]
            values.append(jnp.asarray(observe(i, head, logit[..., None], x), self.weight.dtype))
        return jnp.stack(values, -1)

    def get_weights(self) -> dict[str, np.ndarray]:
        """``{"weight": (D, D), "bias": (D,)}`` as numpy."""
        return {"weight": np.asarray(self.weight), "bias": np.asarray(self.bias)}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> FVSBN:
        """A copy holding ``weights`` (as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        new = (
            jnp.asarray(weights["weight"], self.weight.dtype),
            jnp.asarray(weights["bias"], self.bias.dtype),
        )
        return eqx.tree_at(lambda m: (m.weight, m.bias), self, new)
