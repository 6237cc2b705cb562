"""FVSBN: the fully visible sigmoid belief network, one logistic regression per entry.

``p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j)`` (Neal 1992; Frey 1998; the
baseline of Larochelle & Murray 2011, table 2). The efficient form is one matmul with the
strictly lower-triangular mask (:func:`ppgen.models.masks.fvsbn_mask`); the plated form is
the ``D`` logistic regressions, one sample site each. Mirrors ``ppgen.models.numpyro.fvsbn``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ppgen.models.ar_dense import check_head, check_no_context
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import fvsbn_initial_weights, fvsbn_mask
from ppgen.models.pyro.ar_dense import observe, sample_in_order
from ppgen.models.pyro.params import ModuleWeights, set_weights

__all__ = ["FVSBN"]


class FVSBN(ModuleWeights, nn.Module):
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

    num_params = 1

    def __init__(self, dim: int, seed: int = 0) -> None:
        super().__init__()
        weights = fvsbn_initial_weights(dim, seed)
        self.dim = int(dim)
        self.event_shape = (self.dim,)
        self.order = tuple(range(self.dim))
        self.weight = nn.Parameter(torch.empty(self.dim, self.dim))
        self.bias = nn.Parameter(torch.empty(self.dim))
        self.register_buffer("mask", torch.tensor(fvsbn_mask(self.dim)), persistent=False)
        set_weights(self, weights)

    def masked_weight(self) -> torch.Tensor:
        """``W`` with zeros on and above the diagonal, ``(D, D)``."""
        return torch.where(self.mask, self.weight, 0.0)

    def forward(self, x: torch.Tensor, context: None = None) -> torch.Tensor:
        """All ``D`` logits in one pass: ``(*batch, D) -> (*batch, D, 1)``.

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context (FVSBN is unconditional).
        """
        check_event_shape(tuple(x.shape), self.event_shape, "FVSBN")
        check_no_context("FVSBN", context)
        return F.linear(x.to(self.weight.dtype), self.masked_weight(), self.bias)[..., None]

    def sample(
        self,
        noise: torch.Tensor,
        head: Any,
        context: None = None,
        cached: bool = True,
        prefix: tuple[torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        """Draw ``x (*batch, D)`` entry by entry from ``noise (*batch, D)`` (uniforms).

        ``cached=True`` computes logit ``i`` alone (one row of ``W``, ``O(D)`` per entry);
        ``cached=False`` runs the whole forward pass per entry (the reference). Both give
        the same ``x`` for the same noise.

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
        noise = torch.as_tensor(noise, dtype=self.weight.dtype)
        w = self.masked_weight()
        step = (lambda _, x, i: (self.bias[i] + x @ w[i])[..., None], lambda c, i, xi: c, None)
        return sample_in_order(self, noise, head, context, prefix, step if cached else None)

    def plated(self, x: torch.Tensor | None, head: Any, context: None = None) -> torch.Tensor:
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
            x = x.to(self.weight.dtype)
        values = []
        for i in range(self.dim):
            logit = self.bias[i]
            if i > 0:
                logit = logit + torch.stack(values, -1) @ self.weight[i, :i]
            values.append(observe(i, head, logit[..., None], x).to(self.weight.dtype))
        return torch.stack(values, -1)
