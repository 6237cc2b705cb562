"""Variational autoencoders as NumPyro model/guide pairs.

``VAE`` is the one-stochastic-layer model of Kingma & Welling (2014), "Auto-Encoding
Variational Bayes"; ``HierarchicalVAE`` the two-stochastic-layer model of Burda, Grosse &
Salakhutdinov (2015), "Importance Weighted Autoencoders" (sec. 5, Table 1). Both follow the
ppgen convention ``model(x, num_data=None)`` / ``guide(x, num_data=None)`` with a ``"data"``
plate, so any ppgen objective, trainer or estimator applies to them unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.util import not_jax_tracer

from ppgen.errors import ConfigError, DataError
from ppgen.models.numpyro.nets import MLP, check_weights, load_state_dict, state_dict

__all__ = ["HierarchicalVAE", "VAE"]

LIKELIHOODS = ("bernoulli", "gaussian")
MIN_SCALE = 1e-4  # floor on every predicted standard deviation, keeps log-densities finite


def check_x(x: jax.Array, x_dim: int, binary: bool = False) -> None:
    """Raise :class:`DataError` unless ``x`` is a finite ``(batch, x_dim)`` array, of zeros
    and ones if ``binary`` (a Bernoulli likelihood's data).

    The value checks run only on concrete arrays (inside ``jit`` the shape check still
    runs, so a trainer's ``init`` on the first rows is where they catch bad data). The binary
    check follows NumPyro's distribution validation (on by default), as the Pyro twin
    follows Pyro's: with it off, NumPyro's Bernoulli scores grey values by the cross-entropy.
    """
    shape = jnp.shape(x)
    if len(shape) != 2 or shape[-1] != x_dim:
        raise DataError(
            f"expected x of shape (batch, {x_dim}), got {shape}; "
            "flatten images with x.reshape(len(x), -1)"
        )
    if not not_jax_tracer(x):
        return
    x_np = np.asarray(x)
    if not np.all(np.isfinite(x_np)):
        raise DataError("x contains NaN or Inf; drop or impute those rows first")
    if binary and dist.Distribution._validate_args and np.any((x_np != 0) & (x_np != 1)):
        raise DataError(
            "a Bernoulli likelihood needs binary x (0 or 1); binarize the data "
            "(e.g. dynamic_binarization=True) or use likelihood='gaussian'"
        )


def normal_params(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Split a network output ``[loc, pre]`` into ``(loc, softplus(pre) + 1e-4)``."""
    loc, pre = jnp.split(out, 2, axis=-1)
    return loc, jax.nn.softplus(pre) + MIN_SCALE


def _seeds(seed: int, n: int) -> list[int]:
    """``n`` independent network seeds derived from one model seed."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def _standard_normal(dim: int) -> dist.Distribution:
    return dist.Normal(jnp.zeros(dim), 1.0).to_event(1)


class _DeepLatentModel:
    """Shared plumbing: the observation model, weights in numpy, binding trained params."""

    x_dim: int
    likelihood: str
    nets: tuple[str, ...]  # attribute names of the MLPs, also their numpyro module names
    decoder_scale_raw: jax.Array | None  # learned Gaussian scale (pre-softplus), or None
    fixed_scale: float | None

    def _init_likelihood(self, likelihood: str, scale: float | str) -> None:
        if likelihood not in LIKELIHOODS:
            raise ConfigError(f"unknown likelihood {likelihood!r}; use one of {LIKELIHOODS}")
        if likelihood == "gaussian" and scale == "learned":
            # softplus(0.5413) + 1e-4 = 1.0: start from unit observation noise.
            self.decoder_scale_raw, self.fixed_scale = jnp.full(self.x_dim, 0.5413), None
        elif likelihood == "gaussian":
            if isinstance(scale, str) or not float(scale) > 0:
                raise ConfigError(f"scale must be 'learned' or a positive float, got {scale!r}")
            self.decoder_scale_raw, self.fixed_scale = None, float(scale)
        else:
            self.decoder_scale_raw, self.fixed_scale = None, None
        self.likelihood = likelihood

    def _observation(self, out: jax.Array) -> dist.Distribution:
        """p(x | z) from the last decoder's output (Bernoulli logits or Gaussian mean)."""
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if self.fixed_scale is not None:
            return dist.Normal(out, self.fixed_scale).to_event(1)
        raw = numpyro.param("decoder_scale_raw", self.decoder_scale_raw)
        return dist.Normal(out, jax.nn.softplus(raw) + MIN_SCALE).to_event(1)

    def _mean(self, out: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def get_weights(self) -> dict[str, np.ndarray]:
        """All weights as numpy arrays with torch-style keys (``encoder.layers.0.weight``)."""
        weights = {
            f"{name}.{key}": value
            for name in self.nets
            for key, value in state_dict(getattr(self, name)).items()
        }
        if self.decoder_scale_raw is not None:
            weights["decoder_scale_raw"] = np.asarray(self.decoder_scale_raw)
        return weights

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Load weights in place (the keys and shapes of :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        for name in self.nets:
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            setattr(self, name, load_state_dict(getattr(self, name), own))
        if self.decoder_scale_raw is not None:
            self.decoder_scale_raw = jnp.asarray(
                weights["decoder_scale_raw"], dtype=self.decoder_scale_raw.dtype
            )

    def bind(self, params: dict) -> _DeepLatentModel:
        """A copy of this model holding trained NumPyro params (e.g. ``Trainer.params(state)``).

        Raises:
            ConfigError: ``params`` lacks one of this model's parameter sites.
        """
        names = [f"{n}$params" for n in self.nets]
        names += ["decoder_scale_raw"] if self.decoder_scale_raw is not None else []
        missing = [n for n in names if n not in params]
        if missing:
            raise ConfigError(f"params lack {missing}; pass the params of this model's guide")
        bound = copy.copy(self)
        for name in self.nets:
            setattr(bound, name, eqx.combine(params[f"{name}$params"], getattr(self, name)))
        if self.decoder_scale_raw is not None:
            bound.decoder_scale_raw = params["decoder_scale_raw"]
        return bound


class VAE(_DeepLatentModel):
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
        self.x_dim, self.latent = int(x_dim), int(latent)
        self._init_likelihood(likelihood, scale)
        enc_seed, dec_seed = _seeds(seed, 2)
        self.encoder = MLP([self.x_dim, *hidden, 2 * self.latent], activation, seed=enc_seed)
        self.decoder = MLP([self.latent, *hidden, self.x_dim], activation, seed=dec_seed)

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z) p(x | z)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        check_x(x, self.x_dim, binary=self.likelihood == "bernoulli")
        decoder = eqx_module("decoder", self.decoder)
        with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z = numpyro.sample("z", _standard_normal(self.latent))  # (..., batch, latent)
            numpyro.sample("x", self._observation(decoder(z)), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z | x) = N(mu(x), diag(sigma(x)^2))``."""
        check_x(x, self.x_dim)
        encoder = eqx_module("encoder", self.encoder)
        with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            loc, scale = normal_params(encoder(x))
            numpyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of ``q(z | x)``, each ``(batch, latent)``."""
        check_x(x, self.x_dim)
        return normal_params(self.encoder(x))

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


class HierarchicalVAE(_DeepLatentModel):
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
        if len(latents) != 2 or len(hidden) != 2:
            raise ConfigError("HierarchicalVAE needs two latent sizes and two hidden tuples")
        self.x_dim = int(x_dim)
        self.latents = (int(latents[0]), int(latents[1]))
        self._init_likelihood(likelihood, "learned")
        (h1, h2), (l1, l2) = (tuple(h) for h in hidden), self.latents
        s = _seeds(seed, 4)
        self.encoder1 = MLP([self.x_dim, *h1, 2 * l1], activation, seed=s[0])
        self.encoder2 = MLP([l1, *h2, 2 * l2], activation, seed=s[1])
        self.decoder2 = MLP([l2, *h2, 2 * l1], activation, seed=s[2])
        self.decoder1 = MLP([l1, *h1, self.x_dim], activation, seed=s[3])

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z2) p(z1 | z2) p(x | z1)``."""
        check_x(x, self.x_dim, binary=self.likelihood == "bernoulli")
        decoder2 = eqx_module("decoder2", self.decoder2)
        decoder1 = eqx_module("decoder1", self.decoder1)
        with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z2 = numpyro.sample("z2", _standard_normal(self.latents[1]))
            z1 = numpyro.sample("z1", dist.Normal(*normal_params(decoder2(z2))).to_event(1))
            numpyro.sample("x", self._observation(decoder1(z1)), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z1 | x) q(z2 | z1)``."""
        check_x(x, self.x_dim)
        encoder1 = eqx_module("encoder1", self.encoder1)
        encoder2 = eqx_module("encoder2", self.encoder2)
        with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z1 = numpyro.sample("z1", dist.Normal(*normal_params(encoder1(x))).to_event(1))
            numpyro.sample("z2", dist.Normal(*normal_params(encoder2(z1))).to_event(1))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of ``q(z1 | x)``, each ``(batch, latents[0])``."""
        check_x(x, self.x_dim)
        return normal_params(self.encoder1(x))

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
