"""MADE: a masked autoencoder whose output ``i`` depends only on the inputs before ``i``.

Germain et al. 2015. Each weight matrix is multiplied by a fixed binary mask
(:func:`ppgen.models.masks.made_masks`, in numpy, the same on both backends), so
``out[..., i, :]`` is a function of ``x[..., j]`` for ``order[j] < order[i]`` (and of the
context) only: the conditioner of MAF/IAF (Papamakarios et al. 2017; Kingma et al. 2016)
and, with ``num_params`` logits per input and a head (Bernoulli, Categorical, ...), an
autoregressive density model with the network protocol of the autoregressive models
(``event_shape``, ``order``, ``sample``, ``plated``). Order- and connectivity-agnostic
training (the paper's section 4.2-4.3) uses ``num_masks`` mask sets, one per minibatch, and
the test-time ensemble :meth:`MADE.log_prob_ensemble`. An Equinox module; the masks are
rebuilt from static sizes (cached numpy), never trained. Mirrors ``ppgen.models.pyro.made``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppgen.errors import ConfigError
from ppgen.models.ar_dense import check_context, check_head
from ppgen.models.conventions import check_mlp, check_weights
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import (
    check_direct,
    check_mask_index,
    check_order,
    made_direct_mask,
    made_initial_weights,
    made_mask_positions,
    made_masks,
    sampling_order,
)
from ppgen.models.numpyro.ar import plated_conditionals
from ppgen.models.numpyro.ar_dense import sample_in_order
from ppgen.models.numpyro.nets import ACTIVATIONS

__all__ = ["MADE"]


class MADE(eqx.Module):
    """``(..., D) -> (..., D, num_params)``, autoregressive in ``order``.

    Hidden layers ``h_l = act((W_l * M_l) h_{l-1} + b_l)`` (the first also adds
    ``W_c context``, connected to every hidden unit), output ``(W_L * M_L) h + b_L`` (plus
    ``(W_d * M_d) x`` with ``direct``) read
    as ``(..., D, num_params)``: output unit ``i * num_params + j`` is parameter ``j`` of
    input ``i``. The output layer starts at zero (a fresh MADE outputs zeros). With a
    context, hidden units of degree 0 see only the context, so every output depends on it
    (:func:`ppgen.models.masks.made_degrees`).

    As a density model (Germain et al. 2015): ``x (*batch, D)`` holds floats 0/1 for a
    Bernoulli head, integer codes for a categorical one (read as numbers, cast to the
    weights' float type); ``params[..., i, :]`` are the head's parameters of ``x_i`` given
    the inputs before it. Mask sets (order- and connectivity-agnostic training, sections
    4.2-4.3): set 0 is the deterministic one of ``order``; set ``k >= 1`` draws a new
    ordering and new hidden degrees from seed ``seed + k`` (only new hidden degrees with
    ``agnostic="connectivity"``)
    (:func:`ppgen.models.masks.made_degrees`). ``mask_index`` picks the active set;
    training draws or cycles a set per minibatch (:meth:`with_mask`, or the ``mask_index``
    argument of :meth:`forward`) and the test-time ensemble averages the sets'
    probabilities (:meth:`log_prob_ensemble`). With ``num_masks=1`` (the default) it is the
    single-mask MADE.

    Attributes:
        order: The inputs in sampling order of the active mask set (``order[k]`` = the
            input generated ``k``-th; the inverse permutation of the ``order`` argument).
        positions: The active set's position of each input (the ``order`` argument's
            convention).
        event_shape: ``(D,)``.

    Args:
        input_dim: ``D``.
        hidden: Widths of the hidden layers (at least one).
        num_params: Outputs per input.
        context_dim: Width of the context input (0: none).
        order: ``order[i]`` is the position at which input ``i`` is generated, a
            permutation of ``range(D)``; ``None`` for ``0, 1, ..., D - 1`` (mask set 0).
        activation: One of ``"tanh"``, ``"relu"``, ``"softplus"``, ``"elu"``.
        seed: Seed of the initial weights (numpy's generator, the same on both backends)
            and of the mask sets ``k >= 1``.
        num_masks: How many mask sets (1: the single-mask MADE).
        mask_index: The active mask set, in ``[0, num_masks)``.
        agnostic: What the sets ``k >= 1`` draw: ``"order"`` (a new ordering and new
            hidden degrees; order- and connectivity-agnostic) or ``"connectivity"`` (new
            hidden degrees, ``order`` kept; connectivity-agnostic only).
        degrees: Mask set 0's hidden degrees: ``"spread"`` evenly over ``1..D-1`` (the
            default) or ``"cyclic"`` (ppgen before 2026-12, which leaves the last inputs
            unseen in a layer narrower than ``D - 1``; kept to load runs trained with it)
            (:func:`ppgen.models.masks.made_degrees`).
        direct: Add direct input-to-output connections ``(W_d * M_d) x``, ``M_d`` the
            active set's strictly-earlier mask (:func:`ppgen.models.masks.made_direct_mask`;
            Germain et al.'s ``direct_input_connect="Output"``, the setting of their MNIST
            figures), starting at zero. Default ``False``: the plain MADE (the flows'
            conditioners).

    Raises:
        ConfigError: A bad width, order, activation, ``context_dim``, ``num_masks``,
            ``mask_index``, ``agnostic`` or ``degrees``, or a ``direct`` that is not a bool.
    """

    weights: list[jax.Array]
    biases: list[jax.Array]
    context_weight: jax.Array | None
    direct_weight: jax.Array | None
    input_dim: int = eqx.field(static=True)
    hidden: tuple[int, ...] = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    context_dim: int = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)
    positions: tuple[int, ...] = eqx.field(static=True)
    base_positions: tuple[int, ...] = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    seed: int = eqx.field(static=True)
    num_masks: int = eqx.field(static=True)
    mask_index: int = eqx.field(static=True)
    agnostic: str = eqx.field(static=True)
    degrees: str = eqx.field(static=True)
    direct_connections: bool = eqx.field(static=True)

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        num_params: int,
        context_dim: int = 0,
        order: Sequence[int] | None = None,
        activation: str = "relu",
        seed: int = 0,
        num_masks: int = 1,
        mask_index: int = 0,
        agnostic: str = "order",
        degrees: str = "spread",
        direct: bool = False,
    ) -> None:
        check_mask_index(num_masks, mask_index)
        masks = made_masks(
            input_dim,
            hidden,
            num_params,
            order,
            bool(context_dim),
            mask_index,
            seed,
            agnostic,
            degrees,
        )
        check_mlp([input_dim, *hidden, num_params], activation)
        if isinstance(context_dim, bool) or int(context_dim) < 0:
            raise ConfigError(f"context_dim must be an integer >= 0, got {context_dim!r}")
        self.input_dim, self.num_params, self.context_dim = (
            int(input_dim),
            int(num_params),
            int(context_dim),
        )
        self.hidden = tuple(int(h) for h in hidden)
        self.base_positions = check_order(input_dim, order)  # mask set 0's
        self.seed, self.num_masks, self.mask_index = int(seed), int(num_masks), int(mask_index)
        self.agnostic, self.degrees, self.direct_connections = (
            agnostic,
            degrees,
            check_direct(direct),
        )
        self.positions = made_mask_positions(input_dim, order, mask_index, seed, agnostic)
        self.order = sampling_order(self.positions)
        self.event_shape = (self.input_dim,)
        self.activation = activation
        w = made_initial_weights(
            input_dim, hidden, num_params, context_dim, seed, self.direct_connections
        )
        dtype = jnp.result_type(float)  # JAX's default float (float64 under x64)
        self.weights = [jnp.asarray(w[f"layers.{i}.weight"], dtype) for i in range(len(masks))]
        self.biases = [jnp.asarray(w[f"layers.{i}.bias"], dtype) for i in range(len(masks))]
        self.context_weight = jnp.asarray(w["context.weight"], dtype) if context_dim else None
        self.direct_weight = (
            jnp.asarray(w["direct.weight"], dtype) if self.direct_connections else None
        )

    def masks(self, mask_index: int | None = None) -> list[np.ndarray]:
        """The boolean masks, ``(out, in)`` per layer, of the active mask set (or of set
        ``mask_index``, a Python int)."""
        k = self.mask_index if mask_index is None else check_mask_index(self.num_masks, mask_index)
        return made_masks(
            self.input_dim,
            self.hidden,
            self.num_params,
            self.base_positions,
            self.context_dim > 0,
            k,
            self.seed,
            self.agnostic,
            self.degrees,
        )

    def with_mask(self, mask_index: int) -> MADE:
        """This MADE (the same weights) with mask set ``mask_index`` active: its
        ``order``, ``positions`` and masks are that set's.

        Raises:
            ConfigError: ``mask_index`` outside ``[0, num_masks)``.
        """
        k = check_mask_index(self.num_masks, mask_index)
        new = copy.copy(self)
        positions = made_mask_positions(
            self.input_dim, self.base_positions, k, self.seed, self.agnostic
        )
        # Static fields of a frozen module: set on the copy, as its own __init__ would.
        object.__setattr__(new, "mask_index", k)
        object.__setattr__(new, "positions", positions)
        object.__setattr__(new, "order", sampling_order(positions))
        return new

    def direct_mask(self, mask_index: int | None = None) -> np.ndarray:
        """The boolean ``(D * p, D)`` mask of the direct connections of the active set (or
        of set ``mask_index``, a Python int): :func:`ppgen.models.masks.made_direct_mask`."""
        k = self.mask_index if mask_index is None else check_mask_index(self.num_masks, mask_index)
        return made_direct_mask(
            self.input_dim, self.num_params, self.base_positions, k, self.seed, self.agnostic
        )

    def _set_masks(self, mask_index: int | None) -> list[np.ndarray]:
        """:meth:`masks` of a set, followed by its :meth:`direct_mask` with direct
        connections."""
        direct = [self.direct_mask(mask_index)] if self.direct_connections else []
        return [*self.masks(mask_index), *direct]

    def _layer_masks(self, mask_index: int | jax.Array | None) -> list[Any]:
        """:meth:`_set_masks` for a static set (numpy) or a traced index (all sets stacked,
        indexed)."""
        if mask_index is None or isinstance(mask_index, (int, np.integer)):
            return self._set_masks(mask_index)
        sets = [self._set_masks(k) for k in range(self.num_masks)]
        index = jnp.asarray(mask_index)
        return [jnp.asarray(np.stack(layer))[index] for layer in zip(*sets, strict=True)]

    def __call__(
        self,
        x: jax.Array,
        context: jax.Array | None = None,
        mask_index: int | jax.Array | None = None,
    ) -> jax.Array:
        """``(..., D)`` (and ``context (..., C)``, leading dims broadcast) -> ``(..., D, p)``.

        Args:
            x: Inputs (floats; integer codes are cast to the weights' type).
            context: The context, when built with ``context_dim > 0``.
            mask_index: Compute with mask set ``mask_index`` (``None``: the active set); a
                traced integer array selects among all sets stacked (inside ``jit``, e.g.
                drawn per minibatch with ``jax.random.randint``; an out-of-range traced
                index is clipped, as JAX indexing is).

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context given to a MADE built without one, or the reverse; a
                Python ``mask_index`` outside ``[0, num_masks)``.
        """
        check_event_shape(tuple(x.shape), (self.input_dim,), "MADE")
        check_context("MADE", self.context_dim, context)
        act = ACTIVATIONS[self.activation]
        h = jnp.asarray(x, self.weights[0].dtype)
        last = len(self.weights) - 1
        masks = self._layer_masks(mask_index)
        if self.direct_connections:
            *masks, direct_mask = masks
        x_in = h
        for i, (w, b, mask) in enumerate(zip(self.weights, self.biases, masks, strict=True)):
            h = h @ jnp.where(mask, w, 0.0).T + b
            if i == 0 and context is not None:
                h = h + context @ self.context_weight.T
            if i < last:
                h = act(h)
        if self.direct_connections:
            h = h + x_in @ jnp.where(direct_mask, self.direct_weight, 0.0).T
        return h.reshape(*h.shape[:-1], self.input_dim, self.num_params)

    def log_prob_ensemble(
        self, x: jax.Array, head: Any, context: jax.Array | None = None
    ) -> jax.Array:
        """The test-time ensemble over the ``num_masks`` mask sets, ``log (1/K) sum_k
        p_k(x)`` in nats, ``(*batch,)``.

        Germain et al. 2015 (section 4.2, table 2): a MADE trained order- (and
        connectivity-) agnostically is an ensemble of ``K`` autoregressive models sharing
        weights; at test time the probabilities of the mask sets used in training are
        averaged (their 32-mask MNIST figure, 86.64 nats). Each ``p_k(x)`` is the exact
        likelihood ``prod_i head(params_k[..., i, :])(x_i)`` under set ``k``.

        Raises:
            ConfigError: A head whose ``num_params`` is not this MADE's.
            DataError: ``x`` does not end in ``D``.
        """
        return jax.nn.logsumexp(self.log_prob_masks(x, head, context), 0) - math.log(self.num_masks)

    def log_prob_masks(
        self, x: jax.Array, head: Any, context: jax.Array | None = None
    ) -> jax.Array:
        """Each mask set's exact ``log p_k(x)`` in nats, ``(num_masks, *batch)``: one pass
        of the network per set (what :meth:`log_prob_ensemble` averages; their mean over
        ``k`` is the expected log-likelihood of one set drawn at random, the figure of a
        single order-agnostic MADE).

        Raises:
            ConfigError: A head whose ``num_params`` is not this MADE's.
            DataError: ``x`` does not end in ``D``.
        """
        check_head("MADE", head, self.num_params)
        terms = [
            head.log_prob(self(x, context, mask_index=k), x).sum(-1) for k in range(self.num_masks)
        ]
        return jnp.stack(terms)

    def sample(
        self,
        noise: jax.Array,
        head: Any,
        context: jax.Array | None = None,
        cached: bool = True,
        prefix: tuple[jax.Array, int] | None = None,
    ) -> jax.Array:
        """Draw ``x (*batch, D)`` one input at a time in the active set's ``order``.

        ``cached=True`` carries the first layer's pre-activation (``+= (W_1 * M_1)[:, i]
        x_i`` after each draw) and computes only output ``i``'s rows of the last layer;
        ``cached=False`` runs the whole network per input (the reference). Both give the
        same ``x`` for the same noise. Jit-friendly (one ``lax.fori_loop``).

        Args:
            noise: Uniforms ``(*batch, D, *head.noise_shape)`` (``ar.uniform_noise``).
            head: The conditional family (its ``num_params`` must be this MADE's).
            context: ``(*batch, C)`` when built with a context.
            cached: The fast sampler (default) or the naive one.
            prefix: ``(x_given (*batch, D), count)``: keep the first ``count`` inputs in
                ``order`` (completion).

        Raises:
            ConfigError: A head with another ``num_params``; a missing or unexpected
                context.
            DataError: Noise or prefix of the wrong shape.
        """
        check_head("MADE", head, self.num_params)
        check_context("MADE", self.context_dim, context)
        noise = jnp.asarray(noise, self.weights[0].dtype)
        if not cached:
            return sample_in_order(self, noise, head, context, prefix)
        act = ACTIVATIONS[self.activation]
        pairs = zip(self.weights, self.masks(), strict=True)
        ws = [jnp.where(m, w, 0.0) for w, m in pairs]
        batch = noise.shape[: noise.ndim - 1 - len(tuple(head.noise_shape))]
        carry = self.biases[0]
        if context is not None:
            carry = carry + context @ self.context_weight.T
            batch = jnp.broadcast_shapes(batch, carry.shape[:-1])
        carry = jnp.broadcast_to(carry, (*batch, carry.shape[-1]))
        p = self.num_params
        wd = (
            jnp.where(self.direct_mask(), self.direct_weight, 0.0)
            if self.direct_connections
            else None
        )

        def params_fn(a, x, i):
            h = act(a)
            for w, b in zip(ws[1:-1], self.biases[1:-1], strict=True):
                h = act(h @ w.T + b)
            w_i = jax.lax.dynamic_slice_in_dim(ws[-1], i * p, p, axis=0)
            b_i = jax.lax.dynamic_slice_in_dim(self.biases[-1], i * p, p, axis=0)
            out = h @ w_i.T + b_i
            if wd is not None:  # x holds the inputs drawn so far (zeros elsewhere)
                out = out + x @ jax.lax.dynamic_slice_in_dim(wd, i * p, p, axis=0).T
            return out

        def update_fn(a, i, xi):
            return a + xi[..., None] * ws[0][:, i]

        return sample_in_order(self, noise, head, context, prefix, (params_fn, update_fn, carry))

    def plated(self, x: jax.Array | None, head: Any, context: jax.Array | None = None) -> jax.Array:
        """The plated-conditional form, inside the ``"data"`` plate: for each input ``i``
        in ``order``, ``x_i ~ head(MADE(x_<i)_i)`` (site ``x_{i}``, observed at ``x[...,
        i]``, drawn when ``x`` is ``None``), the network read on the inputs drawn so far
        (zeros elsewhere): the base's generic
        :func:`~ppgen.models.numpyro.ar.plated_conditionals` (the paper writes no other
        recursion).

        Returns:
            ``x (*batch, D)``, the observed or drawn values.

        Raises:
            ConfigError: A head with another ``num_params``; a missing or unexpected
                context.
            DataError: ``x`` does not end in ``D``.
        """
        check_head("MADE", head, self.num_params)
        if x is not None:
            check_event_shape(tuple(x.shape), (self.input_dim,), "MADE")
        return plated_conditionals(self, x, head, context)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy under Pyro's names (``context.weight``, ``layers.0.weight``,
        ...; torch layout ``(out, in)``), the output layer last."""
        out = {}
        if self.context_weight is not None:
            out["context.weight"] = np.asarray(self.context_weight)
        if self.direct_weight is not None:
            out["direct.weight"] = np.asarray(self.direct_weight)
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
        if self.direct_weight is not None:
            dw = jnp.asarray(weights["direct.weight"], self.direct_weight.dtype)
            made = eqx.tree_at(lambda m: m.direct_weight, made, dw)
        return made

    def get_weights(self) -> dict[str, np.ndarray]:
        """The same as :meth:`state_dict` (the name every ppgen transform answers to)."""
        return self.state_dict()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> MADE:
        """The same as :meth:`load_state_dict`: a copy holding ``weights``."""
        return self.load_state_dict(weights)
