"""MADE: a masked autoencoder whose output ``i`` depends only on the inputs before ``i``.

Germain et al. 2015. Each weight matrix is multiplied by a fixed binary mask
(:func:`ppgen.models.masks.made_masks`, in numpy, the same on both backends), so
``out[..., i, :]`` is a function of ``x[..., j]`` for ``order[j] < order[i]`` (and of the
context) only: the conditioner of MAF/IAF (Papamakarios et al. 2017; Kingma et al. 2016)
and, with ``num_params`` logits per input and a head (Bernoulli, Categorical, ...), an
autoregressive density model with the network protocol of the autoregressive models
(``event_shape``, ``order``, ``sample``, ``plated``). Order- and connectivity-agnostic
training (the paper's section 4.2-4.3) uses ``num_masks`` mask sets, one per minibatch, and
the test-time ensemble :meth:`MADE.log_prob_ensemble`. Mirrors ``ppgen.models.numpyro.made``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ppgen.errors import ConfigError
from ppgen.models.ar_dense import check_context, check_head
from ppgen.models.conventions import check_mlp
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
from ppgen.models.pyro.ar import plated_conditionals
from ppgen.models.pyro.ar_dense import sample_in_order
from ppgen.models.pyro.nets import ACTIVATIONS
from ppgen.models.pyro.params import ModuleWeights, set_weights

__all__ = ["MADE"]


class MADE(ModuleWeights, nn.Module):
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
        super().__init__()
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
        self.activation = ACTIVATIONS[activation]()
        weights = made_initial_weights(
            input_dim, hidden, num_params, context_dim, seed, self.direct_connections
        )
        # skip_init: allocate without touching torch's global generator; filled below.
        if self.context_dim:  # registered first: the output layer owns the last parameters
            self.context = nn.utils.skip_init(
                nn.Linear, self.context_dim, masks[0].shape[0], bias=False
            )
        # Also before the layers: the output layer owns the last parameters.
        if self.direct_connections:
            self.direct = nn.utils.skip_init(
                nn.Linear, self.input_dim, masks[-1].shape[0], bias=False
            )
            direct_mask = made_direct_mask(
                input_dim, num_params, self.base_positions, mask_index, seed, agnostic
            )
            self.register_buffer("mask_direct", torch.tensor(direct_mask), persistent=False)
        self.layers = nn.ModuleList(
            nn.utils.skip_init(nn.Linear, m.shape[1], m.shape[0]) for m in masks
        )
        for i, m in enumerate(masks):
            self.register_buffer(f"mask_{i}", torch.tensor(m), persistent=False)
        set_weights(self, weights)

    def masks(self, mask_index: int | None = None) -> list[torch.Tensor]:
        """The boolean masks, ``(out, in)`` per layer, of the active mask set (or of set
        ``mask_index``)."""
        if mask_index is None or int(mask_index) == self.mask_index:
            return [getattr(self, f"mask_{i}") for i in range(len(self.layers))]
        k = check_mask_index(self.num_masks, int(mask_index))
        device = self.layers[0].weight.device
        return [
            torch.tensor(m, device=device)
            for m in made_masks(
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
        ]

    def direct_mask(self, mask_index: int | None = None) -> torch.Tensor:
        """The boolean ``(D * p, D)`` mask of the direct connections of the active set (or
        of set ``mask_index``): :func:`ppgen.models.masks.made_direct_mask`."""
        if mask_index is None or int(mask_index) == self.mask_index:
            if self.direct_connections:
                return self.mask_direct
            k = self.mask_index
        else:
            k = check_mask_index(self.num_masks, int(mask_index))
        mask = made_direct_mask(
            self.input_dim, self.num_params, self.base_positions, k, self.seed, self.agnostic
        )
        return torch.tensor(mask, device=self.layers[0].weight.device)

    def with_mask(self, mask_index: int) -> MADE:
        """This MADE (the same parameters, shared) with mask set ``mask_index`` active:
        its ``order``, ``positions`` and masks are that set's.

        Raises:
            ConfigError: ``mask_index`` outside ``[0, num_masks)``.
        """
        k = check_mask_index(self.num_masks, mask_index)
        new = copy.copy(self)  # shares the parameter and submodule dicts
        new._buffers = dict(self._buffers)
        for i, m in enumerate(self.masks(k)):
            new._buffers[f"mask_{i}"] = m
        if self.direct_connections:
            new._buffers["mask_direct"] = self.direct_mask(k)
        new.mask_index = k
        new.positions = made_mask_positions(
            self.input_dim, self.base_positions, k, self.seed, self.agnostic
        )
        new.order = sampling_order(new.positions)
        return new

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask_index: int | None = None,
    ) -> torch.Tensor:
        """``(..., D)`` (and ``context (..., C)``, leading dims broadcast) -> ``(..., D, p)``.

        Args:
            x: Inputs (floats; integer codes are cast to the weights' type).
            context: The context, when built with ``context_dim > 0``.
            mask_index: Compute with mask set ``mask_index`` (an int or a 0-d tensor;
                ``None``: the active set), e.g. drawn per minibatch in training.

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context given to a MADE built without one, or the reverse; a
                ``mask_index`` outside ``[0, num_masks)``.
        """
        check_event_shape(tuple(x.shape), (self.input_dim,), "MADE")
        check_context("MADE", self.context_dim, context)
        masks = self.masks(None if mask_index is None else int(mask_index))
        h = x_in = x.to(self.layers[0].weight.dtype)
        for i, (layer, mask) in enumerate(zip(self.layers, masks, strict=True)):
            h = F.linear(h, torch.where(mask, layer.weight, 0.0), layer.bias)
            if i == 0 and context is not None:
                h = h + self.context(context)
            if i < len(self.layers) - 1:
                h = self.activation(h)
        if self.direct_connections:
            mask = self.direct_mask(None if mask_index is None else int(mask_index))
            h = h + F.linear(x_in, torch.where(mask, self.direct.weight, 0.0))
        return h.reshape(*h.shape[:-1], self.input_dim, self.num_params)

    def log_prob_ensemble(
        self, x: torch.Tensor, head: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
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
        return torch.logsumexp(self.log_prob_masks(x, head, context), 0) - math.log(self.num_masks)

    def log_prob_masks(
        self, x: torch.Tensor, head: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
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
        return torch.stack(terms)

    def sample(
        self,
        noise: torch.Tensor,
        head: Any,
        context: torch.Tensor | None = None,
        cached: bool = True,
        prefix: tuple[torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        """Draw ``x (*batch, D)`` one input at a time in the active set's ``order``.

        ``cached=True`` carries the first layer's pre-activation (``+= (W_1 * M_1)[:, i]
        x_i`` after each draw) and computes only output ``i``'s rows of the last layer;
        ``cached=False`` runs the whole network per input (the reference). Both give the
        same ``x`` for the same noise.

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
        noise = torch.as_tensor(noise, dtype=self.layers[0].weight.dtype)
        if not cached:
            return sample_in_order(self, noise, head, context, prefix)
        pairs = zip(self.layers, self.masks(), strict=True)
        ws = [torch.where(m, layer.weight, 0.0) for layer, m in pairs]
        carry = self.layers[0].bias
        if context is not None:
            carry = carry + self.context(context)
        p = self.num_params
        wd = (
            torch.where(self.mask_direct, self.direct.weight, 0.0)
            if self.direct_connections
            else None
        )

        def params_fn(a, x, i):
            h = self.activation(a)
            for w, layer in zip(ws[1:-1], self.layers[1:-1], strict=True):
                h = self.activation(F.linear(h, w, layer.bias))
            rows = slice(i * p, (i + 1) * p)
            out = F.linear(h, ws[-1][rows], self.layers[-1].bias[rows])
            if wd is not None:  # x holds the inputs drawn so far (zeros elsewhere)
                out = out + F.linear(x, wd[rows])
            return out

        def update_fn(a, i, xi):
            return a + xi[..., None] * ws[0][:, i]

        return sample_in_order(self, noise, head, context, prefix, (params_fn, update_fn, carry))

    def plated(
        self, x: torch.Tensor | None, head: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The plated-conditional form, inside the ``"data"`` plate: for each input ``i``
        in ``order``, ``x_i ~ head(MADE(x_<i)_i)`` (site ``x_{i}``, observed at ``x[...,
        i]``, drawn when ``x`` is ``None``), the network read on the inputs drawn so far
        (zeros elsewhere): the base's generic
        :func:`~ppgen.models.pyro.ar.plated_conditionals` (the paper writes no other
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
