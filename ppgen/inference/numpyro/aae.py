"""Adversarial autoencoders and their kernel and optimal-transport variants: a VAE's model and
guide fitted by reconstruction plus a match of the aggregate posterior to the prior (mirrors
:mod:`ppgen.inference.pyro.aae`).

The ELBO's KL term ``E_data KL(q(z | x) || p(z))`` pulls every posterior to the prior; these
objectives replace it by a divergence between the *aggregate* posterior
``q(z) = E_data q(z | x)`` and ``p(z)``, estimated from the batch's draws ``z ~ q(z | x_i)``
and as many prior draws ``z' ~ p(z)``:

    loss = N * mean_i [-log p(x_i | z_i)] + weight * N * D(q(z), p(z))

``N`` the ``"data"`` plate's size, so the loss is a per-dataset estimate like the ELBO's and
the trainer's metric (divided by ``N``) reads as the reconstruction NLL per example in nats
plus ``weight`` times ``D`` (in ``D``'s own units). ``D`` is, by ``match``:

- ``"adversarial"``: a critic on ``z`` tells prior draws ("real") from posterior draws
  ("fake"), with :func:`~ppgen.inference.numpyro.adversarial.critic_loss` and
  :func:`~ppgen.inference.numpyro.adversarial.generator_loss` (Makhzani et al. 2015,
  "Adversarial Autoencoders", the Gaussian-prior AAE of section 2); ``D`` is the generator's
  loss per example, and the critic's loss is a second player's.
- ``"mmd"``: the unbiased ``MMD^2``
  (:func:`~ppgen.inference.numpyro.discrepancy.mmd2_unbiased`) of InfoVAE (Zhao, Song &
  Ermon 2017, "InfoVAE", the MMD-VAE) and WAE-MMD (Tolstikhin et al. 2018, "Wasserstein
  Auto-Encoders", algorithm 2); one player.
- ``"sinkhorn"``: the debiased Sinkhorn divergence
  (:func:`~ppgen.inference.numpyro.sinkhorn.sinkhorn_divergence`, ott-jax), the latent penalty
  of the Sinkhorn autoencoder (Patrini et al. 2019, "Sinkhorn AutoEncoders"), in the cost's
  units (``|z - z'|^p``); one player.

The reconstruction term is the model's observation site alone: the guide traced, the model
replayed on its draws, and the log-likelihood of the site ``"x"`` taken (with the plate's
scale), never the prior's density of ``z``. The prior draws are those of the model's own
``"z"`` site's distribution in that replayed run (``rsample`` with the call's key: a
learnable prior gets gradients from the mmd and sinkhorn matches; an adversarial critic sees
them detached). The model must have no latent site but ``"z"``, which lies in the ``"data"``
plate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError
from ppgen.inference.games import (
    AAE_MATCHES,
    CRITIC,
    GENERATOR,
    PLAYERS,
    adversarial_groups,
    check_bandwidths,
    check_epsilon,
    check_game,
    check_match_settings,
    check_rho,
    check_sinkhorn_iterations,
    check_weight,
    latent_bandwidths,
)
from ppgen.inference.numpyro.adversarial import (
    critic_loss,
    generator_loss,
    gradient_penalty,
    scores_of,
)
from ppgen.inference.numpyro.discrepancy import mmd2_unbiased
from ppgen.inference.numpyro.handlers import replay
from ppgen.inference.numpyro.sinkhorn import check_p, sinkhorn_divergence
from ppgen.inference.optim import DEFAULT_GROUP, Group

__all__ = ["AAE"]

DATA = "data"


@dataclass(frozen=True, eq=False)
class AAE:
    """Adversarial autoencoder (Makhzani et al. 2015) and its MMD (InfoVAE, Zhao et al. 2017;
    WAE-MMD, Tolstikhin et al. 2018) and Sinkhorn (Patrini et al. 2019) variants, on a VAE's
    model-guide pair: ``N * mean[-log p(x | z)] + weight * N * D(q(z), p(z))`` (module
    docstring).

    Args:
        match: ``"adversarial"``, ``"mmd"`` or ``"sinkhorn"``
            (:data:`~ppgen.inference.games.AAE_MATCHES`).
        critic: The adversarial match's critic on ``z`` (an Equinox module, ``critic(z)`` ->
            one score per example, e.g. ``MLPCritic(z_dim)``), registered as ``"critic"``
            (``eqx_module``); ``None`` for the other matches.
        weight: The match's weight, ``>= 0`` (0: the reconstruction alone).
        loss: The adversarial loss (:data:`~ppgen.inference.games.ADVERSARIAL_LOSSES`).
        gradient_penalty: The critic's gradient penalty ``lambda`` on interpolated ``z``
            (default 10 for ``"wgan-gp"``, 0 for the others).
        n_critic: Critic updates per encoder-decoder update, used by :meth:`groups`.
        kernel: MMD's kernel, ``"imq"`` (WAE-MMD's) or ``"gaussian"``.
        bandwidths: MMD's Gaussian standard deviations or IMQ scales ``c``, in ``z``'s units;
            ``None``: scaled to the latent's width ``d`` (:meth:`kernel_bandwidths`).
        epsilon: Sinkhorn's entropic regularisation (> 0), in the cost's units.
        p: Sinkhorn's cost power, ``|z - z'|_2^p`` (1 or 2).
        rho: Sinkhorn's unbalanced transport, the KL penalty on the marginals in the cost's
            units (Sejourne et al. 2019); ``None``: balanced.
        threshold: Sinkhorn's stopping tolerance on the marginals.
        max_iterations: Sinkhorn's iteration cap.
        latent: The latent site matched (in the guide and the model).
        site: The model's observed site scored by the reconstruction term.

    Call ``aae(rng_key, model, guide, *args, player=None, **kwargs)``: with the adversarial match
    ``{"critic": loss, "generator": loss}`` (or only ``player``'s entry), the generator
    being the encoder and the decoder; with the others one scalar loss, as ``MMD``'s.

    Raises:
        ConfigError: An unknown match, a critic missing for the adversarial match or given
            for another, a setting of another match changed from its default (e.g.
            ``AAE("mmd", rho=1.0)``), a negative weight, ``epsilon <= 0``, ``rho <= 0``, an
            unknown kernel or loss, a bad bandwidth, ``p`` or ``n_critic``; when called, a
            guide or model without the latent site (or a model with other latent sites, or the
            latent outside the ``"data"`` plate), a model without the observed site.
        DataError: When called, fewer than 2 examples for the mmd match.
    """

    match: str = "adversarial"
    critic: Any = None
    weight: float = 1.0
    loss: str = "nonsaturating"
    gradient_penalty: float | None = None
    n_critic: int = 1
    kernel: str = "imq"
    bandwidths: tuple[float, ...] | None = None
    epsilon: float = 1.0
    p: int = 2
    rho: float | None = None
    threshold: float = 1e-4
    max_iterations: int = 1000
    latent: str = "z"
    site: str = "x"

    def __post_init__(self) -> None:
        if self.match not in AAE_MATCHES:
            raise ConfigError(
                f"unknown match {self.match!r}; choose one of {', '.join(AAE_MATCHES)}"
            )
        if self.match == "adversarial" and self.critic is None:
            raise ConfigError(
                "the adversarial match needs a critic on z, e.g. AAE(critic=MLPCritic(z_dim))"
            )
        if self.match != "adversarial" and self.critic is not None:
            raise ConfigError(
                f"the {self.match} match has no critic; drop critic= or use match='adversarial'"
            )
        check_match_settings(self)
        object.__setattr__(self, "weight", check_weight(self.weight, "the matching weight"))
        object.__setattr__(self, "max_iterations", check_sinkhorn_iterations(self.max_iterations))
        penalty = check_game(self.loss, self.gradient_penalty, self.n_critic)
        object.__setattr__(self, "gradient_penalty", penalty)
        if self.bandwidths is None:
            check_bandwidths(self.kernel, (1.0,))  # the kernel's name
        else:
            object.__setattr__(self, "bandwidths", check_bandwidths(self.kernel, self.bandwidths))
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "p", check_p(self.p))
        object.__setattr__(self, "rho", check_rho(self.rho))

    @property
    def players(self) -> tuple[str, ...]:
        """The trainer's groups the losses are for: critic and generator (adversarial), or
        the one default group."""
        return PLAYERS if self.match == "adversarial" else (DEFAULT_GROUP,)

    @property
    def param_prefixes(self) -> tuple[str, ...]:
        """Param sites of the objective's own (the critic's), trained with the model, not in
        it."""
        return (CRITIC,) if self.match == "adversarial" else ()

    def groups(self, **options: Any) -> list[Group]:
        """The adversarial match's parameter groups: the critic's ``critic*`` sites, updated
        ``n_critic`` times a step, and the generator's (encoder and decoder); ``options`` go
        to :func:`~ppgen.inference.games.adversarial_groups`.

        Raises:
            ConfigError: A one-player match (it trains with the trainer's default group).
        """
        if self.match != "adversarial":
            raise ConfigError(
                f"the {self.match} match has one player: train it with the trainer's default "
                "group (no groups=)"
            )
        return adversarial_groups(n_critic=self.n_critic, **options)

    def kernel_bandwidths(self, latent_dim: int) -> tuple[float, ...]:
        """MMD's bandwidths for a latent of width ``d = latent_dim``: the given ones, or
        :func:`~ppgen.inference.games.latent_bandwidths` (WAE-MMD's IMQ scales, InfoVAE's
        Gaussian bandwidths)."""
        if self.bandwidths is not None:
            return self.bandwidths
        return latent_bandwidths(self.kernel, latent_dim)

    def _traces(self, key: jax.Array, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """The guide's trace and the model's, replayed on the guide's draws, both checked."""
        guide_key, model_key = jax.random.split(key)
        guide_trace = handlers.trace(handlers.seed(guide, guide_key)).get_trace(*args, **kwargs)
        site = guide_trace.get(self.latent)
        if site is None or site["type"] != "sample":
            raise ConfigError(
                f"the guide has no latent site {self.latent!r} to match to the prior; pass "
                "latent= the name of its site"
            )
        if not site["is_observed"] and not getattr(site["fn"], "has_rsample", False):
            raise ConfigError(
                f"the guide's site {self.latent!r} has no reparameterised sampler, so no "
                "gradient reaches the encoder; use a reparameterisable q(z | x)"
            )
        replayed = handlers.seed(replay(model, guide_trace), model_key)
        model_trace = handlers.trace(replayed).get_trace(*args, **kwargs)
        latents = [
            n for n, s in model_trace.items() if s["type"] == "sample" and not s["is_observed"]
        ]
        if self.latent not in latents:
            raise ConfigError(
                f"the model has no latent site {self.latent!r} (its latent sites: "
                f"{', '.join(latents) or 'none'}); pass latent= the name of its prior's site"
            )
        if len(latents) > 1:
            others = ", ".join(n for n in latents if n != self.latent)
            raise ConfigError(
                f"the AAE matches one latent site, {self.latent!r}, but the model also has "
                f"{others}; their prior terms would be dropped"
            )
        x_site = model_trace.get(self.site)
        if x_site is None or x_site["type"] != "sample" or not x_site["is_observed"]:
            raise ConfigError(
                f"the model has no observed site {self.site!r} to reconstruct; pass site= the "
                "name of its observation"
            )
        return guide_trace, model_trace

    def _sizes(self, model_trace: dict) -> tuple[int, float]:
        """``(batch, N)``: the ``"data"`` plate's subsample size and full size at the latent."""
        site = model_trace[self.latent]
        frame = next((f for f in site["cond_indep_stack"] if f.name == DATA), None)
        if frame is None:
            raise ConfigError(
                f"the latent site {self.latent!r} lies outside the {DATA!r} plate; the "
                "aggregate posterior is over examples: draw z inside numpyro.plate('data', ...)"
            )
        size, _ = model_trace[DATA]["args"]
        return frame.size, float(size)

    def _reconstruction(self, model_trace: dict) -> jax.Array:
        """``-log p(x | z)`` of the observed site, scaled by the plate: ``N`` times the batch
        mean (as ``numpyro.infer.util.log_density`` scores a site)."""
        site = model_trace[self.site]
        if site["intermediates"]:
            log_p = site["fn"].log_prob(site["value"], site["intermediates"])
        else:
            log_p = site["fn"].log_prob(site["value"])
        if site["scale"] is not None:
            log_p = site["scale"] * log_p
        return -jnp.sum(log_p)

    def reconstruction(
        self, rng_key: jax.Array, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> jax.Array:
        """The reconstruction term alone, ``-N * mean_i log p(x_i | z_i)`` with
        ``z_i ~ q(z | x_i)`` (nats; the trainer's ``evaluate_bound(objective=...)`` reports
        its negation per example).

        Raises:
            ConfigError: As the objective's call.
        """
        _, model_trace = self._traces(rng_key, model, guide, args, kwargs)
        return self._reconstruction(model_trace)

    def __call__(
        self,
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        *args: Any,
        player: str | None = None,
        **kwargs: Any,
    ) -> dict[str, jax.Array] | jax.Array:
        adversarial = self.match == "adversarial"
        if player is not None and (not adversarial or player not in PLAYERS):
            raise ConfigError(
                f"player must be one of {self.players if adversarial else (None,)} for the "
                f"{self.match} match, got {player!r}"
            )
        trace_key, prior_key, u_key = jax.random.split(rng_key, 3)
        guide_trace, model_trace = self._traces(trace_key, model, guide, args, kwargs)
        batch, num_data = self._sizes(model_trace)
        z_q = guide_trace[self.latent]["value"]
        if jnp.shape(z_q)[:1] != (batch,):
            raise ConfigError(
                f"the latent site {self.latent!r} has shape {tuple(jnp.shape(z_q))}; the AAE "
                f"needs one draw per example, ({batch}, ...), with the 'data' plate at dim 0"
            )
        z_q = z_q.reshape(batch, -1)  # (batch, d)
        prior = model_trace[self.latent]["fn"]
        draw = prior.rsample if prior.has_rsample else prior.sample
        z_p = draw(prior_key).reshape(batch, -1)
        if not adversarial:
            loss = self._reconstruction(model_trace)
            if self.weight > 0:
                loss = loss + self.weight * num_data * self._discrepancy(z_q, z_p)
            return loss
        critic = eqx_module(CRITIC, self.critic)
        losses = {}
        if player in (None, CRITIC):
            # the critic's loss never reaches the encoder, the decoder or the prior
            real_z, fake_z = jax.lax.stop_gradient(z_p), jax.lax.stop_gradient(z_q)
            real, fake = scores_of(critic, real_z), scores_of(critic, fake_z)
            per_example = critic_loss(self.loss, real, fake)
            if self.gradient_penalty > 0:
                u = jax.random.uniform(u_key, (batch,), dtype=z_q.dtype)
                penalty = gradient_penalty(critic, real_z, fake_z, u)
                per_example = per_example + self.gradient_penalty * penalty
            losses[CRITIC] = num_data * jnp.mean(per_example)
        if player in (None, GENERATOR):
            fake = scores_of(critic, z_q)  # the encoder's gradient flows through z_q
            match = num_data * jnp.mean(generator_loss(self.loss, fake))
            losses[GENERATOR] = self._reconstruction(model_trace) + self.weight * match
        return losses

    def _discrepancy(self, z_q: jax.Array, z_p: jax.Array) -> jax.Array:
        """MMD^2 or the Sinkhorn divergence between the two ``(batch, d)`` sets."""
        if self.match == "mmd":
            bandwidths = self.kernel_bandwidths(z_q.shape[1])
            return mmd2_unbiased(z_q, z_p, self.kernel, bandwidths)
        return sinkhorn_divergence(
            z_q, z_p, epsilon=self.epsilon, p=self.p, rho=self.rho, threshold=self.threshold,
            max_iterations=self.max_iterations,
        )  # fmt: skip
