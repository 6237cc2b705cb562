"""Adversarial autoencoders and their kernel and optimal-transport variants: a VAE's model and
guide fitted by reconstruction plus a match of the aggregate posterior to the prior (mirrors
:mod:`ppgen.inference.numpyro.aae`).

The ELBO's KL term ``E_data KL(q(z | x) || p(z))`` pulls every posterior to the prior; these
objectives replace it by a divergence between the *aggregate* posterior
``q(z) = E_data q(z | x)`` and ``p(z)``, estimated from the batch's draws ``z ~ q(z | x_i)``
and as many prior draws ``z' ~ p(z)``:

    loss = N * mean_i [-log p(x_i | z_i)] + weight * N * D(q(z), p(z))

``N`` the ``"data"`` plate's size, so the loss is a per-dataset estimate like the ELBO's and
the trainer's metric (divided by ``N``) reads as the reconstruction NLL per example in nats
plus ``weight`` times ``D`` (in ``D``'s own units). ``D`` is, by ``match``:

- ``"adversarial"``: a critic on ``z`` tells prior draws ("real") from posterior draws
  ("fake"), with :func:`~ppgen.inference.pyro.adversarial.critic_loss` and
  :func:`~ppgen.inference.pyro.adversarial.generator_loss` (Makhzani et al. 2015,
  "Adversarial Autoencoders", the Gaussian-prior AAE of section 2); ``D`` is the generator's
  loss per example, and the critic's loss is a second player's.
- ``"mmd"``: the unbiased ``MMD^2`` (:func:`~ppgen.inference.pyro.discrepancy.mmd2_unbiased`)
  of InfoVAE (Zhao, Song & Ermon 2017, "InfoVAE", the MMD-VAE) and WAE-MMD (Tolstikhin et al.
  2018, "Wasserstein Auto-Encoders", algorithm 2); one player.
- ``"sinkhorn"``: the debiased Sinkhorn divergence
  (:func:`~ppgen.inference.pyro.sinkhorn.sinkhorn_divergence`, POT), the latent penalty of the
  Sinkhorn autoencoder (Patrini et al. 2019, "Sinkhorn AutoEncoders"), in the cost's units
  (``|z - z'|^p``); one player.

The reconstruction term is the model's observation site alone: the guide traced, the model
replayed on its draws, and the log-likelihood of the site ``"x"`` taken (with the plate's
scale), never the prior's density of ``z``. The prior draws are those of the model's own
``"z"`` site's distribution in that replayed run (``rsample``: a learnable prior gets
gradients from the mmd and sinkhorn matches; an adversarial critic sees them detached). The
model must have no latent site but ``"z"``, which lies in the ``"data"`` plate.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import nn

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
from ppgen.inference.optim import DEFAULT_GROUP, Group
from ppgen.inference.pyro.adversarial import (
    critic_loss,
    generator_loss,
    gradient_penalty,
    scores_of,
)
from ppgen.inference.pyro.discrepancy import mmd2_unbiased
from ppgen.inference.pyro.handlers import replay
from ppgen.inference.pyro.sinkhorn import check_p, sinkhorn_divergence
from ppgen.models.pyro.params import local_module

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
        critic: The adversarial match's critic on ``z`` (an ``nn.Module``, ``critic(z)`` ->
            one score per example, e.g. ``MLPCritic(z_dim)``), announced as the param sites
            ``"critic$$$..."``; ``None`` for the other matches.
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

    Call ``aae(model, guide, *args, player=None, **kwargs)``: with the adversarial match
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
    critic: nn.Module | None = None
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

    def _traces(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        """The guide's trace and the model's, replayed on the guide's draws, both checked."""
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        site = guide_trace.nodes.get(self.latent)
        if site is None or site["type"] != "sample" or site_is_subsample(site):
            raise ConfigError(
                f"the guide has no latent site {self.latent!r} to match to the prior; pass "
                "latent= the name of its site"
            )
        if not site["is_observed"] and not getattr(site["fn"], "has_rsample", False):
            raise ConfigError(
                f"the guide's site {self.latent!r} has no reparameterised sampler, so no "
                "gradient reaches the encoder; use a reparameterisable q(z | x)"
            )
        model_trace = poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
        nodes = model_trace.nodes
        latents = [
            n for n, s in nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
        ]  # fmt: skip
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
        x_site = nodes.get(self.site)
        if x_site is None or x_site["type"] != "sample" or not x_site["is_observed"]:
            raise ConfigError(
                f"the model has no observed site {self.site!r} to reconstruct; pass site= the "
                "name of its observation"
            )
        return guide_trace, model_trace

    def _sizes(self, model_trace: Trace) -> tuple[int, float]:
        """``(batch, N)``: the ``"data"`` plate's subsample size and full size at the latent."""
        site = model_trace.nodes[self.latent]
        frame = next((f for f in site["cond_indep_stack"] if f.name == DATA), None)
        if frame is None:
            raise ConfigError(
                f"the latent site {self.latent!r} lies outside the {DATA!r} plate; the "
                "aggregate posterior is over examples: draw z inside pyro.plate('data', ...)"
            )
        return frame.size, float(frame.full_size if frame.full_size is not None else frame.size)

    def _reconstruction(self, model_trace: Trace) -> torch.Tensor:
        """``-log p(x | z)`` of the observed site, scaled by the plate: ``N`` times the batch
        mean."""
        model_trace.compute_log_prob(site_filter=lambda name, site: name == self.site)
        return -model_trace.nodes[self.site]["log_prob_sum"]

    def reconstruction(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """The reconstruction term alone, ``-N * mean_i log p(x_i | z_i)`` with
        ``z_i ~ q(z | x_i)`` (nats; the trainer's ``evaluate_bound(objective=...)`` reports
        its negation per example).

        Raises:
            ConfigError: As the objective's call.
        """
        _, model_trace = self._traces(model, guide, args, kwargs)
        return self._reconstruction(model_trace)

    def __call__(
        self,
        model: Callable,
        guide: Callable,
        *args: Any,
        player: str | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        adversarial = self.match == "adversarial"
        if player is not None and (not adversarial or player not in PLAYERS):
            raise ConfigError(
                f"player must be one of {self.players if adversarial else (None,)} for the "
                f"{self.match} match, got {player!r}"
            )
        # the critic's update never needs the encoder's or decoder's graph
        grad = torch.no_grad() if player == CRITIC else nullcontext()
        with grad:
            guide_trace, model_trace = self._traces(model, guide, args, kwargs)
        batch, num_data = self._sizes(model_trace)
        z_q = guide_trace.nodes[self.latent]["value"]
        if z_q.shape[:1] != (batch,):
            raise ConfigError(
                f"the latent site {self.latent!r} has shape {tuple(z_q.shape)}; the AAE needs "
                f"one draw per example, ({batch}, ...), with the 'data' plate at dim 0"
            )
        z_q = z_q.reshape(batch, -1)  # (batch, d)
        prior = model_trace.nodes[self.latent]["fn"]
        z_p = (prior.rsample() if prior.has_rsample else prior.sample()).reshape(batch, -1)
        if not adversarial:
            loss = self._reconstruction(model_trace)
            if self.weight > 0:
                loss = loss + self.weight * num_data * self._discrepancy(z_q, z_p)
            return loss
        critic = local_module(CRITIC, self.critic)
        losses = {}
        if player in (None, CRITIC):
            real_z, fake_z = z_p.detach(), z_q.detach()
            real, fake = scores_of(critic, real_z), scores_of(critic, fake_z)
            per_example = critic_loss(self.loss, real, fake)
            if self.gradient_penalty > 0:
                u = torch.rand(batch, dtype=z_q.dtype, device=z_q.device)
                penalty = gradient_penalty(critic, real_z, fake_z, u)
                per_example = per_example + self.gradient_penalty * penalty
            losses[CRITIC] = num_data * per_example.mean()
        if player in (None, GENERATOR):
            fake = scores_of(critic, z_q)  # the encoder's gradient flows through z_q
            match = num_data * generator_loss(self.loss, fake).mean()
            losses[GENERATOR] = self._reconstruction(model_trace) + self.weight * match
        return losses

    def _discrepancy(self, z_q: torch.Tensor, z_p: torch.Tensor) -> torch.Tensor:
        """MMD^2 or the Sinkhorn divergence between the two ``(batch, d)`` sets."""
        if self.match == "mmd":
            bandwidths = self.kernel_bandwidths(z_q.shape[1])
            return mmd2_unbiased(z_q, z_p, self.kernel, bandwidths)
        return sinkhorn_divergence(
            z_q, z_p, epsilon=self.epsilon, p=self.p, rho=self.rho, threshold=self.threshold,
            max_iterations=self.max_iterations,
        )  # fmt: skip
