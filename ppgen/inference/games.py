"""What the likelihood-free objectives share whatever the backend: their names, their option
checks and the parameter groups of their players.

An adversarial objective has two players (Goodfellow et al. 2014): the **critic**, a network
the objective owns and registers under the name ``"critic"``, and the **generator**, every
other parameter (the user's model, and the guide's where one is used). Each player is a
:class:`~ppgen.inference.optim.Group` of the trainer, with its own optimiser and number of
updates per step (``n_critic``, Arjovsky et al. 2017); :func:`adversarial_groups` builds
them. MMD and the Sinkhorn divergence have one player, the generator, and train with the
trainer's default group.

The backends' objectives (``ppgen.inference.pyro.adversarial`` /
``ppgen.inference.numpyro.adversarial``, ``.discrepancy``) are mirrors built on these names.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from ppgen.errors import ConfigError, ConvergenceWarning
from ppgen.inference.checks import check_count
from ppgen.inference.optim import Group

__all__ = [
    "AAE_MATCHES",
    "ADVERSARIAL_LOSSES",
    "CRITIC",
    "F_DIVERGENCES",
    "GAUSSIAN_MULTIPLES",
    "IMQ_MULTIPLES",
    "GENERATOR",
    "NLL",
    "MMD_KERNELS",
    "PLAYERS",
    "adversarial_groups",
    "check_adversarial_loss",
    "check_bandwidths",
    "check_epsilon",
    "check_n_critic",
    "check_game",
    "check_penalty",
    "check_player",
    "check_rho",
    "check_sinkhorn_iterations",
    "check_weight",
    "latent_bandwidths",
    "warn_unconverged_sinkhorn",
]

CRITIC, GENERATOR = "critic", "generator"
PLAYERS = (CRITIC, GENERATOR)
#: Flow-GAN's reported entry: the negative log-likelihood term before its weight.
NLL = "nll"

#: f-GAN divergences (Nowozin, Cseke & Tomioka 2016, table 2), by their ``--loss`` names.
F_DIVERGENCES = {
    "f-kl": "Kullback-Leibler",
    "f-rkl": "reverse Kullback-Leibler",
    "f-js": "Jensen-Shannon",
    "f-pearson": "Pearson chi^2",
    "f-hellinger": "squared Hellinger",
}

#: The adversarial losses: Goodfellow et al. 2014's minimax game and its non-saturating
#: generator loss, least squares (Mao et al. 2017), hinge (Lim & Ye 2017; Miyato et al.
#: 2018), WGAN-GP (Gulrajani et al. 2017) and the f-GANs.
ADVERSARIAL_LOSSES = ("nonsaturating", "minimax", "lsgan", "hinge", "wgan-gp", *F_DIVERGENCES)

#: Kernels of MMD: a sum of Gaussians ``exp(-|x - y|^2 / (2 s^2))`` over the bandwidths ``s``
#: (Li et al. 2015; Dziugaite et al. 2015), or of inverse multiquadrics ``c / (c + |x - y|^2)``
#: over the scales ``c`` (Tolstikhin et al. 2018, WAE-MMD).
MMD_KERNELS = ("gaussian", "imq")

#: How an autoencoder's aggregate posterior is matched to its prior (``AAE``: Makhzani et al.
#: 2015; WAE-MMD, Tolstikhin et al. 2018; Sinkhorn autoencoders, Patrini et al. 2019).
AAE_MATCHES = ("adversarial", "mmd", "sinkhorn")

#: The settings of :class:`AAE` that only one match reads; the other matches refuse them
#: changed from their defaults (:func:`check_match_settings`).
AAE_MATCH_SETTINGS = {
    "adversarial": ("loss", "gradient_penalty", "n_critic"),
    "mmd": ("kernel", "bandwidths"),
    "sinkhorn": ("epsilon", "p", "rho", "threshold", "max_iterations"),
}
#: Multiples of ``2 d`` (``d`` the latent's width) of the default IMQ scales: WAE-MMD's
#: ``C = 2 d sigma^2`` for the ``N(0, I)`` prior, summed over these multiples as in the
#: authors' code (Tolstikhin et al. 2018).
IMQ_MULTIPLES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Multiples of ``sqrt(d / 2)`` of the default Gaussian bandwidths: InfoVAE's kernel
#: ``exp(-|z - z'|^2 / d)`` (Zhao et al. 2017) is the middle one.
GAUSSIAN_MULTIPLES = (0.5, 1.0, 2.0)


def latent_bandwidths(kernel: str, latent_dim: int) -> tuple[float, ...]:
    """MMD's default bandwidths for a latent of width ``d = latent_dim`` under an ``N(0, I)``
    prior: IMQ scales ``c = 2 d m`` for ``m`` in :data:`IMQ_MULTIPLES` (WAE-MMD), or
    Gaussian standard deviations ``sqrt(d / 2) m`` for ``m`` in :data:`GAUSSIAN_MULTIPLES`
    (InfoVAE's at ``m = 1``)."""
    d = int(latent_dim)
    if kernel == "imq":
        return tuple(2.0 * d * m for m in IMQ_MULTIPLES)
    return tuple(math.sqrt(d / 2.0) * m for m in GAUSSIAN_MULTIPLES)


#: Gradient-penalty weight of WGAN-GP when none is given (Gulrajani et al. 2017, lambda = 10).
WGAN_GP_PENALTY = 10.0


def check_adversarial_loss(loss: Any) -> str:
    """Return ``loss`` if it names an adversarial loss; ConfigError in one line otherwise."""
    if loss not in ADVERSARIAL_LOSSES:
        raise ConfigError(
            f"unknown adversarial loss {loss!r}; choose one of {', '.join(ADVERSARIAL_LOSSES)}"
        )
    return loss


def check_n_critic(n_critic: Any) -> int:
    """Return ``n_critic`` if it is an integer >= 1; ConfigError otherwise."""
    if isinstance(n_critic, bool) or not isinstance(n_critic, numbers.Integral) or n_critic < 1:
        raise ConfigError(
            f"n_critic must be an integer >= 1 (critic updates per generator update), "
            f"got {n_critic!r}"
        )
    return int(n_critic)


def check_game(loss: Any, gradient_penalty: Any, n_critic: Any) -> float:
    """The settings of a game with a critic, checked (:func:`check_adversarial_loss`,
    :func:`check_n_critic`); returns the gradient penalty's weight (:func:`check_penalty`).

    Raises:
        ConfigError: An unknown loss, a negative penalty, ``n_critic`` < 1.
    """
    check_adversarial_loss(loss)
    penalty = check_penalty(loss, gradient_penalty)
    check_n_critic(n_critic)
    return penalty


def check_player(player: Any) -> None:
    """Raises ConfigError: ``player`` neither ``None`` (every loss) nor one of :data:`PLAYERS`."""
    if player not in (None, *PLAYERS):
        raise ConfigError(f"player must be one of {PLAYERS}, got {player!r}")


def check_weight(value: Any, what: str) -> float:
    """A term's weight (a gradient penalty's, the likelihood's of Flow-GAN, the mutual
    information's of InfoGAN, a latent match's), as a float.

    Raises:
        ConfigError: Not a finite number >= 0 (``what`` names it in the message).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ConfigError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_penalty(loss: str, penalty: Any) -> float:
    """The gradient-penalty weight: ``penalty``, or 10 for WGAN-GP and 0 for the others when
    ``None``; ConfigError if it is negative or not a finite number."""
    if penalty is None:
        return WGAN_GP_PENALTY if loss == "wgan-gp" else 0.0
    return check_weight(penalty, "gradient_penalty")


def check_epsilon(epsilon: Any) -> float:
    """Return the entropic regularisation ``epsilon`` if it is a finite number > 0."""
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, numbers.Real)
        or not (math.isfinite(epsilon) and epsilon > 0)
    ):
        raise ConfigError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)


def check_rho(rho: Any) -> float | None:
    """Return unbalanced OT's marginal penalty ``rho`` (a finite number > 0), or ``None`` for
    balanced transport (``None`` or ``inf``, POT's convention for an exact marginal).

    Raises:
        ConfigError: ``rho`` not a number, ``<= 0`` or NaN.
    """
    if rho is None:
        return None
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or math.isnan(rho) or not rho > 0:
        raise ConfigError(
            f"rho must be a number > 0 (unbalanced transport) or None/inf (balanced), got {rho!r}"
        )
    return None if math.isinf(rho) else float(rho)


#: Values of a setting that mean the same as its default: no gradient penalty, balanced
#: transport (what ``__post_init__`` makes of the defaults, so ``dataclasses.replace`` works).
_NEUTRAL = {"gradient_penalty": (0.0,), "rho": (math.inf,)}


def _is_default(value: Any, neutral: tuple) -> bool:
    """Whether ``value`` is one of ``neutral`` (an array of several numbers never is)."""
    for default in neutral:
        if value is default:
            return True
        try:
            if bool(value == default):
                return True
        except (TypeError, ValueError):  # e.g. an array of several numbers
            pass
    return False


def check_match_settings(objective: Any) -> None:
    """Refuse settings of an AAE (a dataclass with a ``match`` field) that belong to another
    match than its own and differ from their defaults: they would be silently ignored
    (:data:`AAE_MATCH_SETTINGS`). A value meaning the default (``gradient_penalty=0.0``,
    ``rho=inf``) is accepted.

    Raises:
        ConfigError: e.g. ``AAE("mmd", rho=1.0)``, naming every such setting and its match.
    """
    import dataclasses
    import reprlib

    defaults = {f.name: f.default for f in dataclasses.fields(objective)}
    foreign = []
    for match, names in AAE_MATCH_SETTINGS.items():
        if match == objective.match:
            continue
        for name in names:
            value = getattr(objective, name)
            if not _is_default(value, (defaults[name], *_NEUTRAL.get(name, ()))):
                shown = reprlib.repr(value.tolist() if hasattr(value, "tolist") else value)
                foreign.append((f"{name}={shown}", match))
    if foreign:
        what = ", ".join(f"{setting} (the {match} match's)" for setting, match in foreign)
        raise ConfigError(
            f"match={objective.match!r} does not read {what}; drop "
            f"{'it' if len(foreign) == 1 else 'them'} or use that match"
        )


#: The largest Sinkhorn iteration cap: ott counts iterations in 32-bit integers.
MAX_SINKHORN_ITERATIONS = 2**31 - 1


def check_sinkhorn_iterations(max_iterations: Any) -> int:
    """Return ``max_iterations`` if it is an integer in ``1 .. 2**31 - 1``.

    Raises:
        ConfigError: Not an integer, < 1, or above the 32-bit limit.
    """
    value = check_count("max_iterations", max_iterations)
    if value > MAX_SINKHORN_ITERATIONS:
        raise ConfigError(
            f"max_iterations must be at most {MAX_SINKHORN_ITERATIONS} (2**31 - 1), got {value}"
        )
    return value


def warn_unconverged_sinkhorn(epsilon: float, threshold: float, max_iterations: int) -> None:
    """Issue a :class:`~ppgen.errors.ConvergenceWarning` for a Sinkhorn divergence whose
    solves stopped at ``max_iterations`` with the marginal violation above ``threshold``.

    Every such call warns, under the caller's warning filters: Python's default shows one
    message per setting and place, ``"error"`` raises it. A small ``epsilon`` against the
    cost's spread (e.g. 1e-2 on clustered 2-D points spread over a few units, squared cost)
    can need thousands of iterations.
    """
    warnings.warn(
        f"Sinkhorn did not reach threshold {threshold:g} within {max_iterations} iterations "
        f"at epsilon {epsilon:g}: the divergence and its gradient are approximate; raise "
        "max_iterations or epsilon",
        ConvergenceWarning,
        stacklevel=3,
    )


def check_bandwidths(kernel: Any, bandwidths: Any) -> tuple[float, ...]:
    """Return MMD's kernel bandwidths (or IMQ scales) as a tuple of positive floats.

    Raises:
        ConfigError: An unknown kernel, or bandwidths that are not positive finite numbers.
    """
    if kernel not in MMD_KERNELS:
        raise ConfigError(f"unknown MMD kernel {kernel!r}; choose one of {', '.join(MMD_KERNELS)}")
    if isinstance(bandwidths, numbers.Real) or np.ndim(bandwidths) == 0:
        bandwidths = (bandwidths,)
    values = tuple(bandwidths)
    if not values or not all(
        isinstance(b, numbers.Real) and not isinstance(b, bool) and math.isfinite(b) and b > 0
        for b in values
    ):
        raise ConfigError(f"MMD bandwidths must be positive numbers, got {bandwidths!r}")
    return tuple(float(b) for b in values)


def adversarial_groups(
    *,
    lr_critic: float = 1e-4,
    lr_generator: float = 1e-4,
    n_critic: int = 1,
    betas: tuple[float, float] = (0.5, 0.9),
    critic_first: bool = True,
    total_steps: int | None = None,
    lr_schedule: str = "constant",
    clip_norm: float | None = None,
    critic: str = CRITIC,
    ema_generator: float | None = None,
) -> list[Group]:
    """The two players' parameter groups for :class:`~ppgen.inference.pyro.Trainer` (or
    NumPyro's): the critic owns the param sites named ``critic*``, the generator every other.

    Args:
        lr_critic: The critic's Adam learning rate.
        lr_generator: The generator's Adam learning rate.
        n_critic: Critic updates per generator update (5 in WGAN-GP, Gulrajani et al. 2017).
        betas: Adam's ``(beta1, beta2)``; ``(0.5, 0.9)`` is WGAN-GP's and DCGAN's choice
            (Radford et al. 2015 use beta1 = 0.5).
        critic_first: Update the critic first in each step (the usual order) or last.
        total_steps: Length of the learning-rate schedule, in each group's own updates of
            the *generator*; the critic's is ``n_critic`` times longer.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"exponential"``.
        clip_norm: Clip each player's gradient norm to this value.
        critic: The name the objective registers its critic under.
        ema_generator: Decay of an exponential moving average of the generator's weights
            (``Group.ema``; Yazici et al. 2019), which evaluation and sampling then use;
            ``None``: none.

    Raises:
        ConfigError: ``n_critic`` < 1 or an out-of-range option of a group.
    """
    n_critic = check_n_critic(n_critic)
    critic_total = None if total_steps is None else total_steps * n_critic
    groups = [
        Group(
            CRITIC, params=f"{critic}*", lr=lr_critic, betas=betas, updates=n_critic,
            lr_schedule=lr_schedule, total_steps=critic_total, clip_norm=clip_norm,
        ),
        Group(
            GENERATOR, params="*", exclude=f"{critic}*", lr=lr_generator, betas=betas,
            lr_schedule=lr_schedule, total_steps=total_steps, clip_norm=clip_norm,
            ema=ema_generator,
        ),
    ]  # fmt: skip
    return groups if critic_first else groups[::-1]
