"""BiGAN / ALI: a generator and an encoder against a critic of ``(x, z)`` pairs (mirrors
:mod:`ppgen.inference.pyro.bigan`).

Bidirectional GAN (Donahue, Krähenbühl & Darrell 2016, "Adversarial feature learning") and
adversarially learned inference (Dumoulin et al. 2016) play a GAN on the joint space: the
critic ``D(x, z)`` tells the encoder's pairs ``(x, z)``, ``x ~ data``, ``z ~ q(z | x)``
("real") from the generator's ``(G(z), z)``, ``z ~ p(z)`` ("fake"); at the game's optimum
the two joints agree, so the encoder inverts the generator. On a model-guide pair the model
is the generator (its ``"x"`` and its latent ``"z"``,
:func:`~ppgen.inference.numpyro.implicit.model_samples`) and the guide the encoder (its
``"z"``, run on the data batch under a trace), so any user's pair with those sites works.

With ``D`` the critic's score on real and fake pairs, the critic minimises
:func:`~ppgen.inference.numpyro.adversarial.critic_loss` and the other player (generator and
encoder: every parameter but the critic's) the game with the labels swapped: the generator
wants its pairs to look real (:func:`~ppgen.inference.numpyro.adversarial.generator_loss`
on ``D(fake)``), the encoder its pairs to look fake (:func:`encoder_loss` on ``D(real)``):

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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError, DataError
from ppgen.inference.games import (
    CRITIC,
    GENERATOR,
    PLAYERS,
    adversarial_groups,
    check_game,
    check_player,
)
from ppgen.inference.numpyro.adversarial import (
    critic_loss,
    f_activation,
    generator_loss,
    gradient_penalty,
    scores_of,
)
from ppgen.inference.numpyro.implicit import model_samples
from ppgen.inference.optim import Group

__all__ = ["BiGAN", "encoder_loss", "guide_latent"]


def encoder_loss(loss: str, real: jax.Array) -> jax.Array:
    """The encoder's loss per example, ``(batch,)``, from the critic's scores on the
    encoder's pairs ``(x, E(x))``, ``(batch,)`` (see the module's table): the generator's
    loss with the labels swapped, so that the encoder's pairs look fake."""
    if loss == "nonsaturating":
        return jax.nn.softplus(real)
    if loss == "minimax":
        return -jax.nn.softplus(-real)
    if loss == "lsgan":
        return real**2 / 2.0
    if loss in ("hinge", "wgan-gp"):
        return real
    return f_activation(loss, real)


def guide_latent(
    rng_key: jax.Array, guide: Callable, args: tuple, kwargs: dict[str, Any], latent: str = "z"
) -> jax.Array:
    """Run ``guide(*args, **kwargs)`` once under a trace and return its draw at ``latent``,
    reparameterised (differentiable in the guide's parameters), ``(batch, *event)``.

    Raises:
        ConfigError: The guide has no sample site ``latent``, it is observed, or its
            distribution has no reparameterised sampler.
    """
    trace = handlers.trace(handlers.seed(guide, rng_key)).get_trace(*args, **kwargs)
    site = trace.get(latent)
    if site is None or site["type"] != "sample" or site["is_observed"]:
        shown = ", ".join(
            n for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]
        )
        raise ConfigError(
            f"the guide has no latent site {latent!r} (its latent sites: {shown or 'none'}); "
            f"BiGAN's guide is an encoder drawing numpyro.sample({latent!r}, q(z | x))"
        )
    if not getattr(site["fn"], "has_rsample", False):
        raise ConfigError(
            f"the guide's site {latent!r} ({type(site['fn']).__name__}) has no reparameterised "
            "sampler, so no gradient reaches the encoder; use a Delta or a Normal"
        )
    return site["value"]


def _check_latents(z_real: jax.Array, z_fake: jax.Array, latent: str) -> None:
    if jnp.shape(z_real) != jnp.shape(z_fake):
        raise DataError(
            f"the guide's {latent!r} has shape {tuple(jnp.shape(z_real))} but the model's has "
            f"{tuple(jnp.shape(z_fake))}; the encoder must return one code per example of the "
            "prior's width"
        )


@dataclass(frozen=True, eq=False)
class BiGAN:
    """BiGAN / ALI's objective on a generator (the model) and an encoder (the guide): one
    loss for the critic of ``(x, z)`` pairs, one for the generator and encoder together.

    Args:
        critic: The joint critic (an Equinox module called as ``critic(x, z)`` -> one
            score per example, e.g. ``MLPCritic(x_dim, z_dim=...)`` or ``DCGANCritic(...,
            z_dim=...)``); the objective registers it as ``"critic"`` (``eqx_module``).
        loss: One of :data:`~ppgen.inference.games.ADVERSARIAL_LOSSES` (see the module's
            table).
        gradient_penalty: ``lambda`` of the joint gradient penalty added to the critic's
            loss; default 10 for ``"wgan-gp"``, 0 (none) for the others.
        n_critic: Critic updates per generator update, used by :meth:`groups`.
        site: The model's site holding the samples ``x``.
        latent: The latent site shared by the model (``z ~ p(z)``) and the guide
            (``z ~ q(z | x)``).

    Call ``bigan(rng_key, model, guide, *args, player=None, **kwargs)`` -> ``{"critic":
    loss, "generator": loss}`` (``N`` times the batch mean, ``N`` the ``"data"`` plate's
    size), or only ``player``'s entry.

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
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        *args: Any,
        player: str | None = None,
        **kwargs: Any,
    ) -> dict[str, jax.Array]:
        check_player(player)
        model_key, guide_key, u_key = jax.random.split(rng_key, 3)
        out = model_samples(model_key, model, args, kwargs, site=self.site,
                            latents=(self.latent,))  # fmt: skip
        z_real = guide_latent(guide_key, guide, args, kwargs, self.latent)
        (z_fake,) = out.latents
        _check_latents(z_real, z_fake, self.latent)
        x_fake = out.x
        if player == CRITIC:  # the critic's update never needs the other player's graph
            x_fake, z_fake, z_real = jax.lax.stop_gradient((x_fake, z_fake, z_real))
        critic = eqx_module(CRITIC, self.critic)
        real = scores_of(critic, out.data, (z_real,))
        fake = scores_of(critic, x_fake, (z_fake,))
        losses = {}
        if player in (None, CRITIC):
            per_example = critic_loss(self.loss, real, fake)
            if self.gradient_penalty > 0:
                u = jax.random.uniform(u_key, (len(out.data),), dtype=out.data.dtype)
                penalty = _joint_penalty(critic, out.data, z_real, x_fake, z_fake, u)
                per_example = per_example + self.gradient_penalty * penalty
            losses[CRITIC] = out.num_data * jnp.mean(per_example)
        if player in (None, GENERATOR):
            per_example = generator_loss(self.loss, fake) + encoder_loss(self.loss, real)
            losses[GENERATOR] = out.num_data * jnp.mean(per_example)
        return losses


def _joint_penalty(
    critic: Callable,
    x: jax.Array,
    z_real: jax.Array,
    x_fake: jax.Array,
    z_fake: jax.Array,
    u: jax.Array,
) -> jax.Array:
    """WGAN-GP's penalty on the joint: :func:`gradient_penalty` of the critic read as a
    function of ``[flatten(x), z]``, between the real and the (held fixed) fake pairs."""
    batch, event = x.shape[0], x.shape[1:]
    width = x[0].size

    def joint(xz: jax.Array) -> jax.Array:
        return critic(xz[:, :width].reshape(batch, *event), xz[:, width:])

    # the penalty is the critic's alone: the pairs are held fixed
    z_real, x_fake, z_fake = jax.lax.stop_gradient((z_real, x_fake, z_fake))
    real = jnp.concatenate([x.reshape(batch, -1), z_real], axis=-1)
    fake = jnp.concatenate([x_fake.reshape(batch, -1), z_fake], axis=-1)
    return gradient_penalty(joint, real, fake, u)
