"""Variational autoencoders as NumPyro model/guide pairs.

``VAE`` is the one-stochastic-layer model of Kingma & Welling (2014), "Auto-Encoding
Variational Bayes"; ``HierarchicalVAE`` the two-stochastic-layer model of Burda, Grosse &
Salakhutdinov (2015), "Importance Weighted Autoencoders" (sec. 5, Table 1). Both follow the
ppgen convention ``model(x, num_data=None)`` / ``guide(x, num_data=None)`` with a ``"data"``
plate, so any ppgen objective, trainer or estimator applies to them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.numpyro.base import LatentVariableModel, normal_params
from ppgen.models.numpyro.nets import MLP

__all__ = ["HierarchicalVAE", "VAE"]


class VAE(LatentVariableModel):
    """Variational autoencoder (Kingma & Welling, 2014).

    Generative model ``p(z) p(x | z)`` with ``z ~ N(0, I)`` and ``x | z`` Bernoulli with
    logits ``f(z)`` or Gaussian ``N(f(z), s^2)``; amortised guide
    ``q(z | x) = N(mu(x), diag(sigma(x)^2))`` with ``[mu, pre] = g(x)`` and
    ``sigma = softplus(pre) + 1e-4``. ``f`` (module ``"decoder"``) and ``g`` (``"encoder"``)
    are MLPs with the same hidden widths.

    Args:
        x_dim: Number of features of a (flattened) datapoint.
        latent: Dimension of ``z``.
        hidden: Hidden widths of encoder and decoder (the decoder uses them unreversed, as
            the Pyro twin does, so weights copy across).
        activation: Hidden activation of both MLPs.
        likelihood: ``"bernoulli"`` or ``"gaussian"``.
        scale: Gaussian only: a fixed positive ``s``, or ``"learned"`` for a per-feature
            ``s = softplus(decoder_scale_raw) + 1e-4`` (initialised at ``s = 1``).
        seed: Seed of the initial weights.
    """

    nets = ("encoder", "decoder")

    def __init__(
        self,
        x_dim: int,
        latent: int = 50,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        scale: float | str = "learned",
        seed: int = 0,
    ):
        self._init_likelihood(x_dim, likelihood, scale)
        self.latent = int(latent)
        enc_seed, dec_seed = spawn_seeds(seed, 2)
        self.encoder = MLP([self.x_dim, *hidden, 2 * self.latent], activation, seed=enc_seed)
        self.decoder = MLP([self.latent, *hidden, self.x_dim], activation, seed=dec_seed)

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z) p(x | z)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        x = self._check_x(x)
        decoder = eqx_module("decoder", self.decoder)
        with self._plate(x, num_data):
            prior = dist.Normal(jnp.zeros(self.latent), 1.0).to_event(1)
            z = numpyro.sample("z", prior)  # (..., batch, latent)
            numpyro.sample("x", self._observation(decoder(z)), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z | x) = N(mu(x), diag(sigma(x)^2))``."""
        x = self._check_input(x)  # grey x too: only the model's density needs binary data
        encoder = eqx_module("encoder", self.encoder)
        with self._plate(x, num_data):
            loc, scale = normal_params(encoder(x))
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of ``q(z | x)``, each ``(batch, latent)``."""
        return normal_params(self.encoder(self._check_input(x)))

    def decode(self, z: jax.Array) -> jax.Array:
        """Mean of ``p(x | z)`` (Bernoulli probabilities or Gaussian mean), ``(..., x_dim)``."""
        return self._mean(self.decoder(z))

    def sample(self, rng_key: jax.Array, n: int) -> jax.Array:
        """Mean images of ``n`` draws ``z ~ p(z)``, shape ``(n, x_dim)``."""
        return self.decode(jax.random.normal(rng_key, (n, self.latent)))

    def reconstruct(self, rng_key: jax.Array, x: jax.Array) -> jax.Array:
        """Mean of ``p(x | z)`` at one ``z ~ q(z | x)`` per row, shape ``(batch, x_dim)``."""
        loc, scale = self.encode(x)
        return self.decode(loc + scale * jax.random.normal(rng_key, loc.shape))


class HierarchicalVAE(LatentVariableModel):
    """Two stochastic layers, ``x -> z1 -> z2`` (Burda et al., 2015, sec. 5).

    Generative model ``p(z2) p(z1 | z2) p(x | z1)`` with ``z2 ~ N(0, I)``; inference model
    ``q(z1 | x) q(z2 | z1)``; every conditional Gaussian is ``N(loc, softplus(pre) + 1e-4)``
    from an MLP output ``[loc, pre]``. Networks: ``encoder1`` (x -> z1), ``encoder2``
    (z1 -> z2), ``decoder2`` (z2 -> z1), ``decoder1`` (z1 -> x); ``hidden[0]`` are the widths
    between x and z1, ``hidden[1]`` those between z1 and z2 (unreversed in the decoders).

    ``encode``, ``decode`` and ``reconstruct`` work at the first layer ``z1`` (exact
    ``q(z1 | x)`` and ``p(x | z1)``); ``sample`` draws ancestrally ``z2 -> z1 -> x``. A
    Gaussian likelihood uses a learned per-feature scale ``decoder_scale_raw``.
    """

    nets = ("encoder1", "encoder2", "decoder2", "decoder1")

    def __init__(
        self,
        x_dim: int,
        latents: Sequence[int] = (100, 50),
        hidden: Sequence[Sequence[int]] = ((200, 200), (100, 100)),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        seed: int = 0,
    ):
        self._init_likelihood(x_dim, likelihood, "learned")
        if len(latents) != 2 or len(hidden) != 2:
            raise ConfigError(
                f"HierarchicalVAE needs two latent sizes and two hidden specs, got "
                f"latents={tuple(latents)}, hidden={tuple(hidden)}"
            )
        self.latents = (int(latents[0]), int(latents[1]))
        (h1, h2), (l1, l2) = (tuple(h) for h in hidden), self.latents
        s = spawn_seeds(seed, 4)
        self.encoder1 = MLP([self.x_dim, *h1, 2 * l1], activation, seed=s[0])
        self.encoder2 = MLP([l1, *h2, 2 * l2], activation, seed=s[1])
        self.decoder2 = MLP([l2, *h2, 2 * l1], activation, seed=s[2])
        self.decoder1 = MLP([l1, *h1, self.x_dim], activation, seed=s[3])

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z2) p(z1 | z2) p(x | z1)``."""
        x = self._check_x(x)
        decoder2 = eqx_module("decoder2", self.decoder2)
        decoder1 = eqx_module("decoder1", self.decoder1)
        with self._plate(x, num_data):
            z2 = numpyro.sample("z2", dist.Normal(jnp.zeros(self.latents[1]), 1.0).to_event(1))
            z1 = numpyro.sample("z1", dist.Normal(*normal_params(decoder2(z2))).to_event(1))
            numpyro.sample("x", self._observation(decoder1(z1)), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z1 | x) q(z2 | z1)``."""
        x = self._check_input(x)  # grey x too: only the model's density needs binary data
        encoder1 = eqx_module("encoder1", self.encoder1)
        encoder2 = eqx_module("encoder2", self.encoder2)
        with self._plate(x, num_data):
            z1 = numpyro.sample("z1", dist.Normal(*normal_params(encoder1(x))).to_event(1))
            numpyro.sample("z2", dist.Normal(*normal_params(encoder2(z1))).to_event(1))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of ``q(z1 | x)``, each ``(batch, latents[0])``."""
        return normal_params(self.encoder1(self._check_input(x)))

    def decode(self, z: jax.Array) -> jax.Array:
        """Mean of ``p(x | z1)`` for ``z = z1`` of shape ``(..., latents[0])``."""
        return self._mean(self.decoder1(z))

    def sample(self, rng_key: jax.Array, n: int) -> jax.Array:
        """Mean images after ancestral draws ``z2 ~ p(z2)``, ``z1 ~ p(z1 | z2)``: ``(n, x_dim)``."""
        key2, key1 = jax.random.split(rng_key)
        z2 = jax.random.normal(key2, (n, self.latents[1]))
        loc, scale = normal_params(self.decoder2(z2))
        return self.decode(loc + scale * jax.random.normal(key1, loc.shape))

    def reconstruct(self, rng_key: jax.Array, x: jax.Array) -> jax.Array:
        """Mean of ``p(x | z1)`` at one ``z1 ~ q(z1 | x)`` per row, shape ``(batch, x_dim)``."""
        loc, scale = self.encode(x)
        return self.decode(loc + scale * jax.random.normal(rng_key, loc.shape))
