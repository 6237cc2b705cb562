"""Variational autoencoders as Pyro model/guide pairs.

``VAE`` is the model of Kingma & Welling 2014 (*Auto-Encoding Variational Bayes*) and
``HierarchicalVAE`` the two-stochastic-layer model of Burda, Grosse & Salakhutdinov 2015
(*Importance Weighted Autoencoders*). Both keep their networks as ordinary ``nn.Module``
attributes and announce them with module-local param statements
(:mod:`ppgen.models.pyro.params`), so two instances never share or clobber parameters.

Every Gaussian layer reads a network output as ``[loc, pre_scale]`` on the last axis with
``scale = softplus(pre_scale) + 1e-4`` (:func:`~ppgen.models.pyro.base.normal_params`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch

from ppgen.errors import ConfigError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.pyro.base import LatentVariableModel, normal_params
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.params import local_module

__all__ = ["HierarchicalVAE", "VAE"]


class VAE(LatentVariableModel):
    """Variational autoencoder (Kingma & Welling 2014).

    Model ``p(z) = N(0, I)``, ``p(x | z) = Bernoulli(sigmoid(f(z)))`` or ``N(f(z), sigma^2)``;
    guide ``q(z | x) = N(mu(x), diag(sigma(x)^2))``; sites ``"z"`` and ``"x"`` inside the
    ``"data"`` plate; networks ``"encoder"`` (x -> hidden -> 2 * latent) and ``"decoder"``
    (z -> hidden -> x_dim).

    Args:
        x_dim: Features per example.
        latent: Dimension of z.
        hidden: Hidden widths of encoder and decoder (the decoder uses them unreversed).
        activation: Hidden activation, see :class:`~ppgen.models.pyro.nets.MLP`.
        likelihood: ``"bernoulli"`` (decoder emits logits) or ``"gaussian"``.
        scale: Gaussian observation scale: a positive float, or ``"learned"`` for a per-pixel
            parameter ``decoder_scale_raw`` with ``scale = softplus(raw) + 1e-4``.
        seed: Seed of the initial weights.
    """

    def __init__(
        self,
        x_dim: int,
        latent: int = 50,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        scale: float | str = "learned",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._init_likelihood(x_dim, likelihood, scale)
        self.latent = int(latent)
        enc_seed, dec_seed = spawn_seeds(seed, 2)
        self.encoder = MLP([self.x_dim, *hidden, 2 * self.latent], activation, seed=enc_seed)
        self.decoder = MLP([self.latent, *hidden, self.x_dim], activation, seed=dec_seed)

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z ~ N(0, I)``, ``x ~ p(x | z)``; log-densities scaled by ``num_data / len(x)``."""
        x = self._check_x(x)
        decoder = local_module("decoder", self.decoder)
        with self._plate(x, num_data):
            zero = x.new_zeros(len(x), self.latent)
            z = pyro.sample("z", dist.Normal(zero, 1.0).to_event(1))  # (..., batch, latent)
            pyro.sample("x", self._observation(decoder(z)), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z ~ q(z | x) = N(mu(x), diag(sigma(x)^2))``."""
        x = self._check_x(x)
        encoder = local_module("encoder", self.encoder)
        with self._plate(x, num_data):
            loc, scale = normal_params(encoder(x))
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of ``q(z | x)``, each ``(batch, latent)``."""
        return normal_params(self.encoder(self._check_input(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z]``: Bernoulli probabilities or the Gaussian mean, ``(..., x_dim)``."""
        return self._mean(self.decoder(z))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` mean images ``E[x | z]`` for ``z ~ p(z)`` (torch's global RNG), ``(n, x_dim)``."""
        z = torch.randn(n, self.latent, dtype=self.decoder.layers[0].weight.dtype)
        return self.decode(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``E[x | z]`` at one ``z ~ q(z | x)`` per row (global RNG), ``(batch, x_dim)``."""
        loc, scale = self.encode(x)
        return self.decode(loc + scale * torch.randn_like(loc))


class HierarchicalVAE(LatentVariableModel):
    """Two stochastic layers (Burda et al. 2015, section 5).

    Model ``p(z2) p(z1 | z2) p(x | z1)``, guide ``q(z1 | x) q(z2 | z1)``, all Gaussian but
    ``p(x | z1)``; sites ``"z1"``, ``"z2"``, ``"x"``. Networks: ``encoder1`` (x -> q(z1)),
    ``encoder2`` (z1 -> q(z2)), ``decoder2`` (z2 -> p(z1)), ``decoder1`` (z1 -> x). A Gaussian
    likelihood learns a per-pixel ``decoder_scale_raw`` as in :class:`VAE`.

    Args:
        x_dim: Features per example.
        latents: ``(dim z1, dim z2)``.
        hidden: Hidden widths ``(between x and z1, between z1 and z2)``.
        activation: Hidden activation.
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        seed: Seed of the initial weights.
    """

    def __init__(
        self,
        x_dim: int,
        latents: Sequence[int] = (100, 50),
        hidden: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._init_likelihood(x_dim, likelihood, "learned")
        if len(latents) != 2 or len(hidden) != 2:
            raise ConfigError(
                f"HierarchicalVAE needs two latent sizes and two hidden specs, got "
                f"latents={tuple(latents)}, hidden={tuple(hidden)}"
            )
        self.latents = (int(latents[0]), int(latents[1]))
        (d1, d2), (h1, h2) = self.latents, hidden
        s = spawn_seeds(seed, 4)
        self.encoder1 = MLP([self.x_dim, *h1, 2 * d1], activation, seed=s[0])
        self.encoder2 = MLP([d1, *h2, 2 * d2], activation, seed=s[1])
        self.decoder2 = MLP([d2, *h2, 2 * d1], activation, seed=s[2])
        self.decoder1 = MLP([d1, *h1, self.x_dim], activation, seed=s[3])

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z2 ~ N(0, I)``, ``z1 ~ p(z1 | z2)``, ``x ~ p(x | z1)``."""
        x = self._check_x(x)
        decoder2 = local_module("decoder2", self.decoder2)
        decoder1 = local_module("decoder1", self.decoder1)
        with self._plate(x, num_data):
            zero = x.new_zeros(len(x), self.latents[1])
            z2 = pyro.sample("z2", dist.Normal(zero, 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(*normal_params(decoder2(z2))).to_event(1))
            pyro.sample("x", self._observation(decoder1(z1)), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z1 ~ q(z1 | x)``, ``z2 ~ q(z2 | z1)``."""
        x = self._check_x(x)
        encoder1 = local_module("encoder1", self.encoder1)
        encoder2 = local_module("encoder2", self.encoder2)
        with self._plate(x, num_data):
            z1 = pyro.sample("z1", dist.Normal(*normal_params(encoder1(x))).to_event(1))
            pyro.sample("z2", dist.Normal(*normal_params(encoder2(z1))).to_event(1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loc, scale)`` of ``q(z1 | x)``, each ``(batch, latents[0])``: the bottom layer,
        which :meth:`decode` reads (``q(z2 | z1)`` is not needed to reconstruct ``x``)."""
        return normal_params(self.encoder1(self._check_input(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``E[x | z1]`` for a bottom-layer latent ``z1``, ``(..., x_dim)``."""
        return self._mean(self.decoder1(z))

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Mean images for ``z2 ~ p(z2)``, ``z1 ~ p(z1 | z2)`` (global RNG), ``(n, x_dim)``."""
        dtype = self.decoder1.layers[0].weight.dtype
        z2 = torch.randn(n, self.latents[1], dtype=dtype)
        loc, scale = normal_params(self.decoder2(z2))
        return self.decode(loc + scale * torch.randn_like(loc))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """``E[x | z1]`` at one ``z1 ~ q(z1 | x)`` per row (global RNG), ``(batch, x_dim)``."""
        loc, scale = self.encode(x)
        return self.decode(loc + scale * torch.randn_like(loc))
