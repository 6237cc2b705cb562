"""A VAE with a normalizing-flow posterior and/or prior, as a NumPyro model/guide pair
(mirrors :mod:`ppgen.models.pyro.flow_vae`).

The guide draws ``z`` at one site ``"z"`` from ``TransformedDistribution(N(mu(x),
sigma(x)^2), [T_1(. | h), ..., T_K(. | h)])``: the encoder's Gaussian pushed through ``K``
flow layers conditioned on ``h``, an extra output of the encoder (Kingma et al. 2016,
*Improved Variational Inference with Inverse Autoregressive Flow*, sec. 3). Because the site
is an ordinary distribution, ppgen's ELBO, IWAE and log-likelihood estimator score it
unchanged: ``log q(z | x) = log N(u; mu, sigma) - sum_k log|det dT_k/du_{k-1}|``, from the
intermediates NumPyro records with the draw (no inverse is computed for the guide's own
samples). The model's prior may be a flow too, ``p(z) = TransformedDistribution(N(0, I),
[S_1, ..., S_K])``, scored at the guide's ``z`` through its inverse (one pass for MAF and
RealNVP). Neither has a closed-form KL: ``ELBO(analytic_kl=True)`` refuses them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.distributions.transforms import Transform

from ppgen.models import masks
from ppgen.models.conventions import check_flow_vae, check_weights, spawn_seeds
from ppgen.models.numpyro.autoregressive import MaskedAutoregressive
from ppgen.models.numpyro.base import LatentVariableModel, normal_params
from ppgen.models.numpyro.coupling import (
    Affine,
    Coupling,
    RationalQuadraticSpline,
    zero_last_layer,
)
from ppgen.models.numpyro.made import MADE
from ppgen.models.numpyro.nets import MLP
from ppgen.models.numpyro.transforms import ConditionalPlanar

__all__ = ["FlowVAE", "LatentFlow", "build_posterior_flow", "build_prior_flow"]


class LatentFlow(eqx.Module):
    """``K`` flow layers on a latent vector, some conditioned on a context ``h``.

    ``transforms(h)`` is the list for ``TransformedDistribution``, every layer conditioned
    on ``h``, ``(..., context_dim)`` (``transforms()``: unconditioned). An Equinox
    module whose layers are pytree transforms, so ``eqx_module`` registers its arrays as one
    param site. Weights (:meth:`state_dict`) are the layers' ``get_weights`` under
    ``layers.<k>.``, as the Pyro twin's ``named_parameters``.

    Args:
        layers: NumPyro ``Transform`` pytrees (with ``condition`` where conditioned).
    """

    layers: list[Transform]

    def __init__(self, layers: Sequence[Transform]):
        self.layers = list(layers)

    def transforms(self, context: jax.Array | None = None) -> list[Transform]:
        """The layers as transforms, each conditioned on ``context`` when one is given."""
        if context is None:
            return list(self.layers)
        return [layer.condition(context) for layer in self.layers]

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays under torch's names (``layers.0.made.layers.0.weight``)."""
        return {
            f"layers.{k}.{key}": value
            for k, layer in enumerate(self.layers)
            for key, value in layer.get_weights().items()
        }

    def load_state_dict(self, weights: Mapping[str, np.ndarray]) -> LatentFlow:
        """A copy of this flow holding ``weights`` (keys and shapes of :meth:`state_dict`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.state_dict(), weights)
        layers = []
        for k, layer in enumerate(self.layers):
            prefix = f"layers.{k}."
            own = {key[len(prefix) :]: v for key, v in weights.items() if key.startswith(prefix)}
            layers.append(layer.set_weights(own))
        return LatentFlow(layers)


def _autoregressive(
    latent: int,
    hidden: Sequence[int],
    elementwise: Affine | RationalQuadraticSpline,
    direction: str,
    seeds: Sequence[int],
    context: int = 0,
) -> LatentFlow:
    """One MADE-conditioned layer per seed, the input order reversed on every other layer
    (Kingma et al. 2016 reverse it between IAF steps, so each coordinate is conditioned on
    every other)."""
    layers = []
    for k, seed in enumerate(seeds):
        order = np.arange(latent)[:: -1 if k % 2 else 1].copy()
        # The degrees VAE runs so far were trained with; they equal "spread" whenever the
        # widths are at least latent - 1 (every setting ppgen ships), so no stored run changes.
        made = MADE(
            latent, hidden, elementwise.num_params, context, order=order, seed=seed,
            degrees="cyclic",
        )  # fmt: skip
        layers.append(MaskedAutoregressive(made, elementwise, direction=direction))
    return LatentFlow(layers)


def build_posterior_flow(
    name: str,
    latent: int,
    context: int,
    *,
    layers: int,
    hidden: Sequence[int],
    bins: int = 8,
    bound: float = 5.0,
    seed: int = 0,
) -> LatentFlow:
    """The conditional flow of a VAE posterior, sampled in one pass.

    - ``"iaf"``: affine inverse autoregressive flow (Kingma et al. 2016), a MADE with
      context ``h`` per layer, orders reversed between layers.
    - ``"planar"``: amortised planar flow (Rezende & Mohamed 2015), each layer's ``(u, w,
      b)`` a function of ``h`` (:class:`~ppgen.models.numpyro.transforms.ConditionalPlanar`).
    - ``"nsf"``: rational-quadratic spline IAF (Durkan et al. 2019), ``bins`` bins on
      ``[-bound, bound]``.

    Every conditioner's last layer starts at zero, so a fresh flow is the identity.

    Args:
        name: One of ``"iaf"``, ``"planar"``, ``"nsf"``.
        latent: Dimension of ``z``.
        context: Dimension of ``h``.
        layers: Number of flow layers ``K``.
        hidden: Hidden widths of each layer's conditioner.
        bins: Spline bins (``"nsf"``).
        bound: Spline half-width ``B`` (``"nsf"``).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: An unknown name, ``layers < 1`` or a bad spline setting.
    """
    layers, hidden = check_flow_vae(name, "none", layers, hidden)
    if name == "none":
        return LatentFlow([])
    seeds = spawn_seeds(seed, layers)
    if name == "planar":
        return LatentFlow([ConditionalPlanar(latent, context, hidden, seed=s) for s in seeds])
    elementwise = Affine() if name == "iaf" else RationalQuadraticSpline(bins=bins, bound=bound)
    return _autoregressive(latent, hidden, elementwise, "iaf", seeds, context=context)


def build_prior_flow(
    name: str,
    latent: int,
    *,
    layers: int,
    hidden: Sequence[int],
    bins: int = 8,
    bound: float = 5.0,
    seed: int = 0,
) -> LatentFlow:
    """The flow of a VAE prior, scored in one pass (the guide's ``z`` is inverted).

    - ``"maf"``: masked autoregressive flow (Papamakarios et al. 2017), orders reversed
      between layers.
    - ``"realnvp"``: affine coupling (Dinh et al. 2016) with alternating masks, an MLP
      conditioner (ReLU) per layer.
    - ``"nsf"``: rational-quadratic spline MAF (Durkan et al. 2019).

    Every conditioner's last layer starts at zero, so a fresh prior is ``N(0, I)``.

    Args:
        name: One of ``"maf"``, ``"realnvp"``, ``"nsf"``.
        latent: Dimension of ``z``.
        layers: Number of flow layers ``K``.
        hidden: Hidden widths of each layer's conditioner.
        bins: Spline bins (``"nsf"``).
        bound: Spline half-width ``B`` (``"nsf"``).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: An unknown name, ``layers < 1`` or a bad spline setting.
    """
    layers, hidden = check_flow_vae("none", name, layers, hidden)
    if name == "none":
        return LatentFlow([])
    seeds = spawn_seeds(seed, layers)
    if name == "realnvp":
        flows = []
        for k, s in enumerate(seeds):
            mask = masks.alternating_mask(latent, flip=bool(k % 2))
            elementwise = Affine()
            n_in, n_out = int(mask.sum()), int((~mask).sum())
            net = MLP([n_in, *hidden, n_out * elementwise.num_params], "relu", seed=s)
            flows.append(Coupling(mask, zero_last_layer(net), elementwise))
        return LatentFlow(flows)
    elementwise = Affine() if name == "maf" else RationalQuadraticSpline(bins=bins, bound=bound)
    return _autoregressive(latent, hidden, elementwise, "maf", seeds)


class FlowVAE(LatentVariableModel):
    """A VAE whose posterior and/or prior is a normalizing flow.

    Model ``p(z) p(x | z)`` with ``p(z) = N(0, I)`` or ``N(0, I)`` pushed through a flow
    (:func:`build_prior_flow`); guide ``q(z | x)``: ``u ~ N(mu(x), diag(sigma(x)^2))``
    pushed through ``K`` layers conditioned on ``h(x)`` (:func:`build_posterior_flow`),
    sampled at the one site ``"z"`` as a ``TransformedDistribution``. The encoder (module
    ``"encoder"``) emits ``[mu, pre_sigma, h]``, ``sigma = softplus(pre_sigma) + 1e-4`` and
    ``h`` the flow's context (Kingma et al. 2016: "the encoder network outputs an extra
    output h"); with no posterior flow it emits ``[mu, pre_sigma]`` as
    :class:`~ppgen.models.numpyro.vae.VAE`'s. Networks: ``"encoder"``, ``"decoder"``,
    ``"posterior_flow"``, ``"prior_flow"`` (:class:`LatentFlow`; registered only when it has
    layers). Fresh flows are the identity.

    Args:
        x_dim: Features per example.
        latent: Dimension of z.
        hidden: Hidden widths of encoder and decoder.
        activation: Hidden activation of encoder and decoder.
        likelihood: ``"bernoulli"`` (decoder emits logits) or ``"gaussian"``.
        scale: Gaussian observation scale (a positive float or ``"learned"``).
        posterior_flow: ``"none"``, ``"iaf"``, ``"planar"`` or ``"nsf"``.
        prior_flow: ``"none"``, ``"maf"``, ``"realnvp"`` or ``"nsf"``.
        flow_layers: Layers ``K`` of each flow.
        flow_hidden: Hidden widths of each flow layer's conditioner.
        context: Dimension of ``h`` (default: the encoder's last hidden width, else
            ``latent``).
        bins: Spline bins of ``"nsf"`` flows.
        bound: Spline half-width ``B`` of ``"nsf"`` flows.
        seed: Seed of the initial weights (encoder and decoder as :class:`VAE`'s).

    Raises:
        ConfigError: Unknown flow names, ``flow_layers < 1``, bad widths or likelihood.
    """

    def __init__(
        self,
        x_dim: int,
        latent: int = 50,
        hidden: Sequence[int] = (200, 200),
        activation: str = "tanh",
        likelihood: str = "bernoulli",
        scale: float | str = "learned",
        posterior_flow: str = "iaf",
        prior_flow: str = "none",
        flow_layers: int = 2,
        flow_hidden: Sequence[int] = (200, 200),
        context: int | None = None,
        bins: int = 8,
        bound: float = 5.0,
        seed: int = 0,
    ):
        self._init_likelihood(x_dim, likelihood, scale)
        check_flow_vae(posterior_flow, prior_flow, flow_layers, flow_hidden)
        self.latent = int(latent)
        default_context = hidden[-1] if len(hidden) else self.latent
        self.context = 0 if posterior_flow == "none" else int(context or default_context)
        enc_seed, dec_seed, post_seed, prior_seed = spawn_seeds(seed, 4)
        out = 2 * self.latent + self.context
        self.encoder = MLP([self.x_dim, *hidden, out], activation, seed=enc_seed)
        self.decoder = MLP([self.latent, *hidden, self.x_dim], activation, seed=dec_seed)
        flow = dict(layers=flow_layers, hidden=flow_hidden, bins=bins, bound=bound)
        self.posterior_flow = build_posterior_flow(
            posterior_flow, self.latent, self.context, seed=post_seed, **flow
        )
        self.prior_flow = build_prior_flow(prior_flow, self.latent, seed=prior_seed, **flow)
        # a flow without layers has no parameters, hence no param site
        flows = [n for n in ("posterior_flow", "prior_flow") if getattr(self, n).layers]
        self.nets = ("encoder", "decoder", *flows)

    def _posterior(self, out: jax.Array, flow: LatentFlow) -> dist.Distribution:
        loc, scale = normal_params(out[..., : 2 * self.latent])
        base = dist.Normal(loc, scale).to_event(1)
        if not flow.layers:
            return base
        return dist.TransformedDistribution(base, flow.transforms(out[..., 2 * self.latent :]))

    def _prior(self, flow: LatentFlow) -> dist.Distribution:
        base = dist.Normal(jnp.zeros(self.latent), 1.0).to_event(1)
        return dist.TransformedDistribution(base, flow.transforms()) if flow.layers else base

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``z ~ p(z)`` (a flow or ``N(0, I)``), ``x ~ p(x | z)``."""
        x = self._check_x(x)
        decoder = eqx_module("decoder", self.decoder)
        prior = self.prior_flow
        if prior.layers:
            prior = eqx_module("prior_flow", prior)
        with self._plate(x, num_data):
            z = numpyro.sample("z", self._prior(prior))  # (..., batch, latent)
            numpyro.sample("x", self._observation(decoder(z)), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``z ~ q(z | x)``: the encoder's Gaussian through the posterior flow."""
        x = self._check_input(x)  # grey x too: only the model's density needs binary data
        encoder = eqx_module("encoder", self.encoder)
        flow = self.posterior_flow
        if flow.layers:
            flow = eqx_module("posterior_flow", flow)
        with self._plate(x, num_data):
            numpyro.sample("z", self._posterior(encoder(x), flow))

    def posterior(self, x: jax.Array) -> dist.Distribution:
        """``q(z | x)``, batch ``(batch,)``, event ``(latent,)``: a ``TransformedDistribution``
        (``Normal(...).to_event(1)`` without a posterior flow)."""
        return self._posterior(self.encoder(self._check_input(x)), self.posterior_flow)

    def prior(self) -> dist.Distribution:
        """``p(z)``, event ``(latent,)``: ``N(0, I)``, through the prior flow if any."""
        return self._prior(self.prior_flow)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean and standard deviation of the base Gaussian of ``q(z | x)`` (before the
        flow), each ``(batch, latent)``."""
        out = self.encoder(self._check_input(x))
        return normal_params(out[..., : 2 * self.latent])

    def decode(self, z: jax.Array) -> jax.Array:
        """Mean of ``p(x | z)`` (Bernoulli probabilities or Gaussian mean), ``(..., x_dim)``."""
        return self._mean(self.decoder(z))

    def sample(self, rng_key: jax.Array, n: int) -> jax.Array:
        """Mean images of ``n`` draws ``z ~ p(z)``, shape ``(n, x_dim)``."""
        return self.decode(self.prior().sample(rng_key, (n,)))

    def reconstruct(self, rng_key: jax.Array, x: jax.Array) -> jax.Array:
        """Mean of ``p(x | z)`` at one ``z ~ q(z | x)`` per row, shape ``(batch, x_dim)``."""
        return self.decode(self.posterior(x).sample(rng_key))
