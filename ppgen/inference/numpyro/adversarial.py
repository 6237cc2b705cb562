"""Adversarial objectives: a critic network tells the data from a generator's samples
(mirrors :mod:`ppgen.inference.pyro.adversarial`).

``Adversarial(critic, loss=...)`` is a loss on any model-guide pair whose model is a
generator (:mod:`~ppgen.inference.numpyro.implicit`), with the ELBO's call
``loss(rng_key, model, guide, *args, **kwargs)``; it returns one loss per player,
``{"critic": ..., "generator": ...}``, for the trainer's parameter groups
(:func:`~ppgen.inference.games.adversarial_groups`). Losses are per-dataset estimates as the
ELBO's are: ``N`` times the batch mean, ``N`` the ``"data"`` plate's size, so the trainer's
metrics (divided by ``N``) read as per-example values.

With ``D`` the critic's score (a logit) on real data ``x ~ P`` and on samples ``G(z) ~ Q``:

=============== ==================================================== ==========================
loss            critic minimises                                     generator minimises
=============== ==================================================== ==========================
minimax         ``softplus(-D(x)) + softplus(D(G))``                 ``-softplus(D(G))``
nonsaturating   same                                                 ``softplus(-D(G))``
lsgan           ``((D(x) - 1)^2 + D(G)^2) / 2``                      ``(D(G) - 1)^2 / 2``
hinge           ``relu(1 - D(x)) + relu(1 + D(G))``                  ``-D(G)``
wgan-gp         ``D(G) - D(x) + lambda (|grad D(x_hat)| - 1)^2``     ``-D(G)``
f-<name>        ``-g(D(x)) + f*(g(D(G)))``                           ``-g(D(G))``
=============== ==================================================== ==========================

Goodfellow et al. 2014 (minimax, and the non-saturating generator loss of their section 3);
Mao et al. 2017 (least squares, a-b-c = 0-1-1); Lim & Ye 2017, Miyato et al. 2018 (hinge);
Gulrajani et al. 2017 (WGAN-GP: ``x_hat = u x + (1 - u) G(z)``, ``u ~ U(0, 1)`` per
example, ``lambda = 10``); Nowozin, Cseke & Tomioka 2016 (f-GAN: output activation ``g`` and
Fenchel conjugate ``f*`` of table 6; the critic's negated loss is the variational lower
bound on ``D_f(P || Q)``, and the generator takes the paper's alternative update of section
3.2, maximising ``E_Q[g(D(G))]``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError
from ppgen.inference.games import (
    CRITIC,
    F_DIVERGENCES,
    GENERATOR,
    NLL,
    PLAYERS,
    adversarial_groups,
    check_game,
    check_player,
    check_weight,
)
from ppgen.inference.numpyro.implicit import model_samples
from ppgen.inference.numpyro.objectives import ELBO
from ppgen.inference.optim import Group

__all__ = [
    "Adversarial",
    "FlowGAN",
    "critic_loss",
    "f_activation",
    "f_conjugate",
    "generator_loss",
    "gradient_penalty",
    "scores_of",
]

LOG2 = math.log(2.0)


def f_activation(name: str, v: jax.Array) -> jax.Array:
    """``g(v)``, the output activation of an f-GAN critic (Nowozin et al. 2016, table 6),
    mapping a score to the conjugate's domain."""
    if name == "f-kl" or name == "f-pearson":
        return v
    if name == "f-rkl":
        return -jnp.exp(-v)
    if name == "f-hellinger":
        return 1.0 - jnp.exp(-v)
    if name == "f-js":
        return LOG2 - jax.nn.softplus(-v)
    raise ConfigError(f"unknown f-divergence {name!r}; choose one of {', '.join(F_DIVERGENCES)}")


def f_conjugate(name: str, v: jax.Array) -> jax.Array:
    """``f*(g(v))``, the Fenchel conjugate at the activated score, in closed form (stable
    where ``f*`` alone would take the log or the ratio of small numbers)."""
    if name == "f-kl":  # f*(t) = exp(t - 1)
        return jnp.exp(v - 1.0)
    if name == "f-rkl":  # f*(t) = -1 - log(-t), t = -exp(-v)
        return v - 1.0
    if name == "f-pearson":  # f*(t) = t^2 / 4 + t
        return v**2 / 4.0 + v
    if name == "f-hellinger":  # f*(t) = t / (1 - t), t = 1 - exp(-v)
        return jnp.exp(v) - 1.0
    if name == "f-js":  # f*(t) = -log(2 - exp(t)), t = log 2 - softplus(-v)
        return jax.nn.softplus(v) - LOG2
    raise ConfigError(f"unknown f-divergence {name!r}; choose one of {', '.join(F_DIVERGENCES)}")


def critic_loss(loss: str, real: jax.Array, fake: jax.Array) -> jax.Array:
    """The critic's loss per example (without a gradient penalty), ``(batch,)``, from its
    scores on real data and on samples, each ``(batch,)``."""
    if loss in ("nonsaturating", "minimax"):
        return jax.nn.softplus(-real) + jax.nn.softplus(fake)
    if loss == "lsgan":
        return ((real - 1.0) ** 2 + fake**2) / 2.0
    if loss == "hinge":
        return jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake)
    if loss == "wgan-gp":
        return fake - real
    return -f_activation(loss, real) + f_conjugate(loss, fake)


def generator_loss(loss: str, fake: jax.Array) -> jax.Array:
    """The generator's loss per example, ``(batch,)``, from the critic's scores on samples."""
    if loss == "minimax":
        return -jax.nn.softplus(fake)
    if loss == "nonsaturating":
        return jax.nn.softplus(-fake)
    if loss == "lsgan":
        return (fake - 1.0) ** 2 / 2.0
    if loss in ("hinge", "wgan-gp"):
        return -fake
    return -f_activation(loss, fake)


def scores_of(critic: Callable, x: jax.Array, extras: Sequence[jax.Array] = ()) -> jax.Array:
    """``critic(x, *extras)`` as one score per example, ``(batch,)``.

    Raises:
        ConfigError: The critic returns another shape than ``(batch,)`` or ``(batch, 1)``.
    """
    try:
        out = critic(x, *extras)
    except TypeError as err:  # e.g. a critic of (x, y) without conditions=("y",)
        if "argument" not in str(err):
            raise
        raise ConfigError(
            f"calling the critic with x and {len(extras)} condition(s) failed ({err}); a "
            'critic of (x, y) needs Adversarial(..., conditions=("y",))'
        ) from err
    batch = x.shape[0]
    if out.shape not in ((batch,), (batch, 1)):
        raise ConfigError(
            f"the critic must return one score per example, shape ({batch},) or ({batch}, 1), "
            f"got {tuple(out.shape)}"
        )
    return out.reshape(batch)


def gradient_penalty(
    critic: Callable,
    x: jax.Array,
    x_fake: jax.Array,
    u: jax.Array,
    extras: Sequence[jax.Array] = (),
) -> jax.Array:
    """WGAN-GP's penalty per example, ``(|grad_x D(x_hat)|_2 - 1)^2``, ``(batch,)``
    (Gulrajani et al. 2017, algorithm 1), at ``x_hat = u x + (1 - u) x_fake``.

    Args:
        critic: The critic, ``(batch, *event) -> (batch,)`` scores.
        x: Real data, ``(batch, *event)``.
        x_fake: Samples, same shape.
        u: Interpolation weights in [0, 1], ``(batch,)``.
        extras: Further inputs of the critic (cGAN's labels), held fixed.
    """
    u = u.reshape(u.shape + (1,) * (x.ndim - 1))
    x_hat = u * x + (1.0 - u) * x_fake
    grad = jax.grad(lambda xh: jnp.sum(scores_of(critic, xh, extras)))(x_hat)
    # The critic scores each example alone, so row i of the gradient is grad D(x_hat_i).
    norm = jnp.sqrt(jnp.sum(grad.reshape(len(x), -1) ** 2, axis=-1) + 1e-12)
    return (norm - 1.0) ** 2


@dataclass(frozen=True, eq=False)
class Adversarial:
    """A GAN objective on a generator program: one loss for the critic, one for the generator.

    Args:
        critic: The critic network (an Equinox module, ``critic(x, *conditions)`` -> one
            score per example); the objective registers it as ``"critic"``
            (``eqx_module``), so the trainer finds and optimises it.
        loss: One of :data:`~ppgen.inference.games.ADVERSARIAL_LOSSES` (see the module's
            table).
        gradient_penalty: ``lambda`` of the gradient penalty added to the critic's loss;
            default 10 for ``"wgan-gp"``, 0 (none) for the others.
        n_critic: Critic updates per generator update, used by :meth:`groups`.
        site: The model's site holding the samples.
        conditions: Observed sites of the model the critic also sees, as further
            arguments after ``x`` (a class-conditional GAN's ``("y",)``, Mirza & Osindero
            2014).

    Call ``adversarial(rng_key, model, guide, *args, player=None, **kwargs)`` -> ``{"critic":
    loss, "generator": loss}``, or only ``player``'s entry when the trainer asks for one.

    Raises:
        ConfigError: An unknown loss, ``n_critic`` < 1, a negative penalty; when called, a
            critic whose output is not one score per example, or a model without the sites.
        DataError: When called, samples whose shape differs from the data's.
    """

    critic: Any
    loss: str = "nonsaturating"
    gradient_penalty: float | None = None
    n_critic: int = 1
    site: str = "x"
    conditions: tuple[str, ...] = field(default=())
    players = PLAYERS
    #: Param sites of the objective's own (``critic$...``): trained with the model, not in it.
    param_prefixes = (CRITIC,)

    def __post_init__(self) -> None:
        penalty = check_game(self.loss, self.gradient_penalty, self.n_critic)
        object.__setattr__(self, "gradient_penalty", penalty)
        object.__setattr__(self, "conditions", tuple(self.conditions))

    def groups(self, **options: Any) -> list[Group]:
        """The trainer's parameter groups for this game, with ``n_critic`` critic updates
        per step; ``options`` go to :func:`~ppgen.inference.games.adversarial_groups`."""
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
        model_key, u_key = jax.random.split(rng_key)
        out = model_samples(model_key, model, args, kwargs, site=self.site,
                            conditions=self.conditions)  # fmt: skip
        critic = eqx_module(CRITIC, self.critic)
        x_fake = out.x
        if player == CRITIC:  # the critic's update never needs the generator's graph
            x_fake = jax.lax.stop_gradient(x_fake)
        fake = scores_of(critic, x_fake, out.conditions)
        losses = {}
        if player in (None, CRITIC):
            real = scores_of(critic, out.data, out.conditions)
            per_example = critic_loss(self.loss, real, fake)
            if self.gradient_penalty > 0:
                u = jax.random.uniform(u_key, (len(out.data),), dtype=out.data.dtype)
                x_fixed = jax.lax.stop_gradient(x_fake)  # the penalty is the critic's alone
                penalty = gradient_penalty(critic, out.data, x_fixed, u, out.conditions)
                per_example = per_example + self.gradient_penalty * penalty
            losses[CRITIC] = out.num_data * jnp.mean(per_example)
        if player in (None, GENERATOR):
            losses[GENERATOR] = out.num_data * jnp.mean(generator_loss(self.loss, fake))
        return losses


@dataclass(frozen=True, eq=False)
class FlowGAN:
    """Flow-GAN's hybrid objective (Grover, Dhar & Ermon 2018): an adversarial game on a
    model with a likelihood, the generator's loss plus ``lambda`` times the model's negative
    log-likelihood of the data batch.

    ``min_G max_D V(G, D) - lambda E_data[log p_G(x)]``: the generator (a flow: its ``"x"``
    an observed site whose distribution draws reparameterised samples, e.g. ``FlowDensity``)
    is fitted by :class:`Adversarial`'s ``loss`` against the critic and by maximum
    likelihood at once; ``lambda = 0`` is adversarial training alone. The likelihood term is
    ppgen's :class:`ELBO`, which for a model without latent sites (a flow, with its empty
    guide) is the exact ``log p(x)``; for a latent-variable model it is the bound. Both terms
    are per-dataset estimates (``N`` times the batch mean), so ``lambda`` weighs nats per
    example against the adversarial loss per example.

    Args:
        critic: The critic network (see :class:`Adversarial`).
        loss: The adversarial loss (the paper's is the Wasserstein GAN; ``"wgan-gp"`` here).
        weight: ``lambda >= 0``, the weight of the negative log-likelihood.
        gradient_penalty: As :class:`Adversarial`'s.
        n_critic: Critic updates per generator update, used by :meth:`groups`.
        site: The model's site holding the samples (and the data).

    Call ``flowgan(rng_key, model, guide, *args, player=None, **kwargs)``
    -> ``{"critic": ..., "generator": ..., "nll": -ELBO}``; ``"nll"`` (the negative
    log-likelihood term before its weight, per dataset, no group's loss) only in the
    generator's call and when ``lambda > 0``. The trainer logs it per example as ``nll``
    (the ``reported`` entry): with the validation NLL, both of the paper's figures.

    Raises:
        ConfigError: A negative or non-finite ``weight``, and :class:`Adversarial`'s errors.
    """

    critic: Any
    loss: str = "wgan-gp"
    weight: float = 1.0
    gradient_penalty: float | None = None
    n_critic: int = 1
    site: str = "x"
    players = PLAYERS
    param_prefixes = (CRITIC,)
    reported = (NLL,)  # logged by the trainer beside the losses

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", check_weight(self.weight, "the likelihood weight"))
        adversarial = Adversarial(
            self.critic, loss=self.loss, gradient_penalty=self.gradient_penalty,
            n_critic=self.n_critic, site=self.site,
        )  # fmt: skip
        object.__setattr__(self, "_adversarial", adversarial)
        object.__setattr__(self, "_likelihood", ELBO())

    def groups(self, **options: Any) -> list[Group]:
        """The trainer's parameter groups (see :meth:`Adversarial.groups`)."""
        return self._adversarial.groups(**options)

    def __call__(
        self,
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        *args: Any,
        player: str | None = None,
        **kwargs: Any,
    ) -> dict[str, jax.Array]:
        adversarial_key, likelihood_key = jax.random.split(rng_key)
        losses = self._adversarial(adversarial_key, model, guide, *args, player=player, **kwargs)
        if player in (None, GENERATOR) and self.weight > 0:
            nll = self._likelihood(likelihood_key, model, guide, *args, **kwargs)
            losses[GENERATOR] = losses[GENERATOR] + self.weight * nll
            losses[NLL] = nll
        return losses
