"""Sigmoid belief net with one binary latent layer as a Pyro model/guide pair (mirrors
:mod:`ppgen.models.numpyro.sbn`).

Neal (1992), "Connectionist learning of belief networks"; the one-layer "SBN 200" of Mnih &
Gregor (2014, NVIL, sec. 6.2, table 1) on binarized MNIST. Its latents are discrete, so the
guide's site has no reparameterised sampler: train it with the score-function objectives
:class:`~ppgen.inference.pyro.NVIL` or :class:`~ppgen.inference.pyro.VIMCO`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppgen.errors import ConfigError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.pyro.base import LatentVariableModel
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.params import local_module, local_param

__all__ = ["SigmoidBeliefNet"]


class SigmoidBeliefNet(LatentVariableModel):
    """One-layer sigmoid belief net (Neal, 1992) with a factorial Bernoulli guide.

    Model ``h ~ prod_j Bernoulli(sigmoid(b_j))`` (``b`` is ``prior_logits``),
    ``x | h ~ prod_i Bernoulli(sigmoid(W h + c)_i)`` (``decoder``, one linear layer);
    guide ``q(h | x) = prod_j Bernoulli(sigmoid(g(x))_j)`` with ``g`` (``encoder``) an MLP
    ``[x_dim, *hidden, latent]``: ``hidden=()`` is the linear recognition SBN of NVIL's
    "SBN 200" (Mnih & Gregor, 2014). Site ``"h"`` is ``(..., batch, latent)`` of 0/1 values.

    Args:
        x_dim: Features of a (flattened, binary) datapoint.
        latent: Binary latent units (the papers' 200).
        hidden: Hidden widths of the encoder (none: linear).
        activation: Hidden activation of the encoder.
        seed: Seed of the initial weights.

    Raises:
        ConfigError: ``latent`` not a positive integer, or a bad network option.
    """

    likelihood = "bernoulli"

    def __init__(
        self,
        x_dim: int,
        latent: int = 200,
        hidden: Sequence[int] = (),
        activation: str = "tanh",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(latent, int) or latent < 1:
            raise ConfigError(f"latent must be a positive integer, got {latent!r}")
        self.x_dim, self.latent = int(x_dim), latent
        enc_seed, dec_seed = spawn_seeds(seed, 2)
        self.encoder = MLP([self.x_dim, *hidden, latent], activation, seed=enc_seed)
        self.decoder = MLP([latent, self.x_dim], activation, seed=dec_seed)
        dtype = self.decoder.layers[0].weight.dtype
        self.prior_logits = nn.Parameter(torch.zeros(latent, dtype=dtype))

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``p(h) p(x | h)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        x = self._check_x(x)
        decoder = local_module("decoder", self.decoder)
        logits = local_param("prior_logits", self.prior_logits)
        with self._plate(x, num_data):
            prior = dist.Bernoulli(logits=logits.expand(len(x), self.latent)).to_event(1)
            h = pyro.sample("h", prior)  # (..., batch, latent)
            pyro.sample("x", self._observation(decoder(h)), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``q(h | x)``: independent Bernoullis with logits ``g(x)``."""
        x = self._check_input(x)
        encoder = local_module("encoder", self.encoder)
        with self._plate(x, num_data):
            pyro.sample("h", dist.Bernoulli(logits=encoder(x)).to_event(1))

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        """``E[x | h]``, ``(..., x_dim)``."""
        return torch.sigmoid(self.decoder(h))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Mean images ``E[x | h]`` of ``n`` draws ``h ~ p(h)`` (torch's generator),
        ``(n, x_dim)``."""
        h = torch.bernoulli(torch.sigmoid(self.prior_logits).expand(n, self.latent))
        return self.decode(h)
