"""NADE: the neural autoregressive distribution estimator (Larochelle & Murray 2011).

``p(x_i = 1 | x_<i) = sigmoid(b_i + V_i . h_i)``, ``h_i = sigmoid(a_i)``, ``a_i = c +
W[:, <i] x_<i``: one hidden layer whose weights are shared by all ``D`` conditionals, so
the running pre-activation obeys ``a_{i+1} = a_i + W[:, i] x_i`` and all ``D``
conditionals cost ``O(DH)`` (the paper's equations 5-7 and algorithm 1). The efficient form
takes the exclusive cumulative sum of ``W[:, j] x_j`` (never a ``D x D x H`` tensor); the
cached sampler and the plated form carry ``a``. Mirrors ``ppgen.models.numpyro.nade``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ppgen.models.ar_dense import check_head, check_no_context
from ppgen.models.elementwise import check_event_shape
from ppgen.models.masks import nade_initial_weights
from ppgen.models.pyro.ar_dense import observe, sample_in_order
from ppgen.models.pyro.params import ModuleWeights, set_weights

__all__ = ["NADE"]


class NADE(ModuleWeights, nn.Module):
    """``x (*batch, D)`` (floats 0/1) ``-> logits (*batch, D, 1)``, autoregressive in
    ``0, 1, ..., D - 1``; for the Bernoulli head only.

    Weights, by the paper's names in torch layout: ``W`` ``(H, D)``, ``c`` ``(H,)``, ``V``
    ``(D, H)``, ``b`` ``(D,)``; sigmoid hidden units as in the paper.

    Args:
        dim: ``D``, the number of binary entries.
        hidden: ``H``, the number of hidden units.
        seed: Seed of the initial weights (numpy, the same on both backends).

    Raises:
        ConfigError: ``dim`` or ``hidden`` not a positive integer.
    """

    num_params = 1

    def __init__(self, dim: int, hidden: int, seed: int = 0) -> None:
        super().__init__()
        weights = nade_initial_weights(dim, hidden, seed)
        self.dim, self.hidden = int(dim), int(hidden)
        self.event_shape = (self.dim,)
        self.order = tuple(range(self.dim))
        self.W = nn.Parameter(torch.empty(self.hidden, self.dim))
        self.c = nn.Parameter(torch.empty(self.hidden))
        self.V = nn.Parameter(torch.empty(self.dim, self.hidden))
        self.b = nn.Parameter(torch.empty(self.dim))
        set_weights(self, weights)

    def forward(self, x: torch.Tensor, context: None = None) -> torch.Tensor:
        """All ``D`` logits in one ``O(DH)`` pass: ``(*batch, D) -> (*batch, D, 1)``.

        Raises:
            DataError: ``x`` does not end in ``D``.
            ConfigError: A context (NADE is unconditional).
        """
        check_event_shape(tuple(x.shape), self.event_shape, "NADE")
        check_no_context("NADE", context)
        x = x.to(self.W.dtype)
        # a_i = c + sum_{j<i} W[:, j] x_j, carried through the D inputs (the paper's
        # recurrence): the working set is one (*batch, H) activation, not the (*batch, H, D)
        # tensor of a cumulative sum, which makes a CPU step about 3x faster.
        a = self.c.expand(*x.shape[:-1], self.hidden)
        logits = []
        for i in range(self.dim):
            logits.append(torch.sigmoid(a) @ self.V[i])
            a = a + x[..., i, None] * self.W[:, i]
        return (torch.stack(logits, -1) + self.b)[..., None]

    def sample(
        self,
        noise: torch.Tensor,
        head: Any,
        context: None = None,
        cached: bool = True,
        prefix: tuple[torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        """Draw ``x (*batch, D)`` entry by entry from ``noise (*batch, D)`` (uniforms).

        ``cached=True`` carries the running pre-activation ``a`` (``a += W[:, i] x_i``
        after each draw: ``O(H)`` per entry, the paper's algorithm 1); ``cached=False``
        runs the whole forward pass per entry (the reference). Both give the same ``x``
        for the same noise.

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
        check_head("NADE", head, 1, bernoulli_only=True)
        check_no_context("NADE", context)
        noise = torch.as_tensor(noise, dtype=self.W.dtype)

        def params_fn(a, x, i):
            return (self.b[i] + torch.sigmoid(a) @ self.V[i])[..., None]

        def update_fn(a, i, xi):
            return a + xi[..., None] * self.W[:, i]

        step = (params_fn, update_fn, self.c)
        return sample_in_order(self, noise, head, context, prefix, step if cached else None)

    def plated(self, x: torch.Tensor | None, head: Any, context: None = None) -> torch.Tensor:
        """The plated-conditional form, inside the ``"data"`` plate: the paper's recursion
        ``a_0 = c``; ``x_i ~ Bernoulli(sigmoid(b_i + V_i . sigmoid(a_i)))`` (site
        ``x_{i}``, observed at ``x[..., i]``, drawn when ``x`` is ``None``); ``a_{i+1} =
        a_i + W[:, i] x_i``.

        Returns:
            ``x (*batch, D)``, the observed or drawn values.

        Raises:
            ConfigError: Another head, or a context.
            DataError: ``x`` does not end in ``D``.
        """
        check_head("NADE", head, 1, bernoulli_only=True)
        check_no_context("NADE", context)
        if x is not None:
            check_event_shape(tuple(x.shape), self.event_shape, "NADE")
            x = x.to(self.W.dtype)
        a, values = self.c, []
        for i in range(self.dim):
            logit = self.b[i] + torch.sigmoid(a) @ self.V[i]
            xi = observe(i, head, logit[..., None], x).to(self.W.dtype)
            a = a + xi[..., None] * self.W[:, i]
            values.append(xi)
        return torch.stack(values, -1)
