"""BiGAN / ALI: a generator and an encoder against a critic of ``(x, z)`` pairs (mirrors
:mod:`ppgen.inference.numpyro.bigan`).

Bidirectional GAN (Donahue, Krähenbühl & Darrell 2016, "Adversarial feature learning") and
adversarially learned inference (Dumoulin et al. 2016) play a GAN on the joint space: the
critic ``D(x, z)`` tells the encoder's pairs ``(x, z)``, ``x ~ data``, ``z ~ q(z | x)``
("real") from the generator's ``(G(z), z)``, ``z ~ p(z)`` ("fake"); at the game's optimum
the two joints agree, so the encoder inverts the generator. On a model-guide pair the model
is the generator (its ``"x"`` and its latent ``"z"``,
:func:`~ppgen.inference.pyro.implicit.model_samples`) and the guide the encoder (its
``"z"``, run on the data batch under a trace), so any user's pair with those sites works.

With ``D`` the critic's score on real and fake pairs, the critic minimises
:func:`~ppgen.inference.pyro.adversarial.critic_loss` and the other player (generator and
encoder: every parameter but the critic's) the game with the labels swapped: the generator
wants its pairs to look real (:func:`~ppgen.inference.pyro.adversarial.generator_loss` on
``D(fake)``), the encoder its pairs to look fake (:func:`encoder_loss` on ``D(real)``):

=============== ===================================== =========================================
loss            generator's term                       encoder's term
=============== ===================================== =========================================
nonsaturating   ``softplus(-D(fake))``                 ``softplus(D(real))``
minimax         ``-softplus(D(fake))``                 ``-softplus(-D(real))``
lsgan           ``(D(fake) - 1)^2 / 2``                ``D(real)^2 / 2``
hinge, wgan-gp  ``-D(fake)``                           ``D(real)``
f-<name>        ``-g(D(fake))``                        ``g(D(real))``
=============== ===================================== =========================================

The non-saturating pair is Donahue et al.'s section 3.4 (their "inverted labels") and
Dumoulin et al.'s; the minimax one is the paper's game itself; least squares targets the
critic's fake label ``a = 0`` for the encoder as it targets ``c = 1`` for the generator
(Mao et al. 2017); for the f-GANs the encoder minimises the variational bound directly
(the real pairs enter it only through ``g(D)``, Nowozin et al. 2016), the generator takes
the paper's alternative update. WGAN-GP's penalty is taken on the joint: at
``(x_hat, z_hat) = u (x, E(x)) + (1 - u) (G(z), z)``, the gradient over both.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.nn.functional import softplus

from ppgen.errors import ConfigError, DataError
from ppgen.inference.games import (
    CRITIC,
    GENERATOR,
    PLAYERS,
    adversarial_groups,
    check_game,
    check_player,
)
from ppgen.inference.optim import Group
from ppgen.inference.pyro.adversarial import (
    critic_loss,
    f_activation,
    generator_loss,
    gradient_penalty,
    scores_of,
)
from ppgen.inference.pyro.implicit import model_samples
from ppgen.models.pyro.params import local_module

__all__ = ["BiGAN", "encoder_loss", "guide_latent"]


def encoder_loss(loss: str, real: torch.Tensor) -> torch.Tensor:
    """The encoder's loss per example, ``(batch,)``, from the critic's scores on the
    encoder's pairs ``(x, E(x))``, ``(batch,)`` (see the module's table): the generator's
    loss with the labels swapped, so that the encoder's pairs look fake."""
    if loss == "nonsaturating":
        return softplus(real)
    if loss == "minimax":
        return -softplus(-real)
    if loss == "lsgan":
        return real**2 / 2.0
    if loss in ("hinge", "wgan-gp"):
        return real
    return f_activation(loss, real)


def guide_latent(
    guide: Callable, args: tuple, kwargs: dict[str, Any], latent: str = "z"
) -> torch.Tensor:
    """Run ``guide(*args, **kwargs)`` once under a trace and return its draw at ``latent``,
    reparameterised (differentiable in the guide's parameters), ``(batch, *event)``.

    Raises:
        ConfigError: The guide has no sample site ``latent``, it is observed, or its
            distribution has no reparameterised sampler.
    """
    trace = poutine.trace(guide).get_trace(*args, **kwargs)
    site = trace.nodes.get(latent)
    if site is None or site["type"] != "sample" or site["is_observed"]:
        shown = ", ".join(
            n for n, s in trace.nodes.items()
            if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)
            and not s["infer"].get("_deterministic")
        )  # fmt: skip
        raise ConfigError(
            f"the guide has no latent site {latent!r} (its latent sites: {shown or 'none'}); "
            f"BiGAN's guide is an encoder drawing pyro.sample({latent!r}, q(z | x))"
        )
    if not getattr(site["fn"], "has_rsample", False):
        raise ConfigError(
            f"the guide's site {latent!r} ({type(site['fn']).__name__}) has no reparameterised "
            "sampler, so no gradient reaches the encoder; use a Delta or a Normal"
        )
    return site["value"]


def _check_latents(z_real: torch.Tensor, z_fake: torch.Tensor, latent: str) -> None:
    if tuple(z_real.shape) != tuple(z_fake.shape):
        raise DataError(
            f"the guide's {latent!r} has shape {tuple(z_real.shape)} but the model's has "
            f"{tuple(z_fake.shape)}; the encoder must return one code per example of the "
            "prior's width"
        )


@dataclass(frozen=True, eq=False)
class BiGAN:
    """BiGAN / ALI's objective on a generator (the model) and an encoder (the guide): one
    loss for the critic of ``(x, z)`` pairs, one for the generator and encoder together.

    Args:
        critic: The joint critic (an ``nn.Module`` called as ``critic(x, z)`` -> one score
            per example, e.g. ``MLPCritic(x_dim, z_dim=...)`` or ``DCGANCritic(...,
            z_dim=...)``); the objective announces its parameters as the module-local param
            sites ``"critic$$$..."``.
        loss: One of :data:`~ppgen.inference.games.ADVERSARIAL_LOSSES` (see the module's
            table).
        gradient_penalty: ``lambda`` of the joint gradient penalty added to the critic's
            loss; default 10 for ``"wgan-gp"``, 0 (none) for the others.
        n_critic: Critic updates per generator update, used by :meth:`groups`.
        site: The model's site holding the samples ``x``.
        latent: The latent site shared by the model (``z ~ p(z)``) and the guide
            (``z ~ q(z | x)``).

    Call ``bigan(model, guide, *args, player=None, **kwargs)`` -> ``{"critic": loss,
    "generator": loss}`` (``N`` times the batch mean, ``N`` the ``"data"`` plate's size), or
    only ``player``'s entry.

    Raises:
        ConfigError: An unknown loss, ``n_critic`` < 1, a negative penalty; when called, a
            critic not of ``(x, z)`` or not one score per example, a model or a guide
            without the sites.
        DataError: When called, samples whose shape differs from the data's, or codes whose
            shape differs from the prior's.
    """

    critic: Any
    loss: str = "nonsaturating"
    gradient_penalty: float | None = None
    n_critic: int = 1
    site: str = "x"
    latent: str = "z"
    players = PLAYERS
    #: Param sites of the objective's own (``critic$...``): trained with the model, not in it.
    param_prefixes = (CRITIC,)

    def __post_init__(self) -> None:
        penalty = check_game(self.loss, self.gradient_penalty, self.n_critic)
        object.__setattr__(self, "gradient_penalty", penalty)

    def groups(self, **options: Any) -> list[Group]:
        """The trainer's parameter groups: the critic's, and the generator's, which holds
        every other param site (the generator's and the encoder's); ``options`` go to
        :func:`~ppgen.inference.games.adversarial_groups`."""
        return adversarial_groups(n_critic=self.n_critic, **options)

    def __call__(
        self,
        model: Callable,
        guide: Callable,
        *args: Any,
        player: str | None = None,
        **kwargs: Any,
    ) -> dict[str, torch.Tensor]:
        check_player(player)
        # the critic's update never needs the generator's or the encoder's graph
        graph = torch.no_grad() if player == CRITIC else contextlib.nullcontext()
        with graph:
            out = model_samples(model, args, kwargs, site=self.site, latents=(self.latent,))
            z_real = guide_latent(guide, args, kwargs, self.latent)
        (z_fake,) = out.latents
        _check_latents(z_real, z_fake, self.latent)
        critic = local_module(CRITIC, self.critic)
        real = scores_of(critic, out.data, (z_real,))
        fake = scores_of(critic, out.x, (z_fake,))
        losses = {}
        if player in (None, CRITIC):
            per_example = critic_loss(self.loss, real, fake)
            if self.gradient_penalty > 0:
                u = torch.rand(len(out.data), dtype=out.data.dtype, device=out.data.device)
                penalty = _joint_penalty(critic, out.data, z_real, out.x, z_fake, u)
                per_example = per_example + self.gradient_penalty * penalty
            losses[CRITIC] = out.num_data * per_example.mean()
        if player in (None, GENERATOR):
            per_example = generator_loss(self.loss, fake) + encoder_loss(self.loss, real)
            losses[GENERATOR] = out.num_data * per_example.mean()
        return losses


def _joint_penalty(
    critic: Callable,
    x: torch.Tensor,
    z_real: torch.Tensor,
    x_fake: torch.Tensor,
    z_fake: torch.Tensor,
    u: torch.Tensor,
) -> torch.Tensor:
    """WGAN-GP's penalty on the joint: :func:`gradient_penalty` of the critic read as a
    function of ``[flatten(x), z]``, between the real and the (held fixed) fake pairs."""
    batch, event = len(x), x.shape[1:]
    width = x[0].numel()

    def joint(xz: torch.Tensor) -> torch.Tensor:
        return critic(xz[:, :width].reshape(batch, *event), xz[:, width:])

    # the penalty is the critic's alone: the pairs are held fixed
    z_real, x_fake, z_fake = z_real.detach(), x_fake.detach(), z_fake.detach()
    real = torch.cat([x.reshape(batch, -1), z_real], dim=-1)
    fake = torch.cat([x_fake.reshape(batch, -1), z_fake], dim=-1)
    return gradient_penalty(joint, real, fake, u)
