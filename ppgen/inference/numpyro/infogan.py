"""InfoGAN: an adversarial game plus the variational mutual-information bound of a code
(mirrors :mod:`ppgen.inference.pyro.infogan`).

Chen et al. 2016 ("InfoGAN: Interpretable representation learning by information
maximizing generative adversarial nets") give the generator ``G(z, c)`` a code ``c`` and ask
that ``c`` stay readable in ``x = G(z, c)``: they maximise the mutual information
``I(c; x)`` through its variational lower bound (their eq. 4-5)

    ``L_I(G, Q) = E_{c ~ p(c), x ~ G(z, c)}[log Q(c | x)] + H(c)  <=  I(c; G(z, c))``,

with ``Q(c | x)`` an auxiliary network. Here ``Q`` is the **guide**: any guide that samples
the code sites of the model, so ``InfoGAN`` works on any model-guide pair whose model is a
generator (:mod:`~ppgen.inference.numpyro.implicit`) drawing its codes at sample sites. The
game is :class:`~ppgen.inference.numpyro.adversarial.Adversarial`'s (any of its losses); the
generator player, which owns the generator's and the guide's parameters (every param site
but ``critic*``, :func:`~ppgen.inference.games.adversarial_groups`), minimises
``generator loss - lambda L_I``. ``log Q(c | x)`` is the guide run on the model's own sample
``x`` with its code sites conditioned on the codes that made it (``handlers.condition``), in
the same run of the model the critic scores. ``L_I`` is a per-dataset estimate as the
game's losses are (each site's sum over the ``"data"`` plate times its scale ``N / batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from numpyro import handlers

from ppgen.errors import ConfigError
from ppgen.inference.games import CRITIC, GENERATOR, PLAYERS, check_weight
from ppgen.inference.numpyro.adversarial import Adversarial
from ppgen.inference.optim import Group

__all__ = ["InfoGAN", "mutual_information_bound"]

#: The entry of :class:`InfoGAN`'s output holding ``L_I`` (a diagnostic, no group's loss).
MUTUAL_INFORMATION = "mutual_information"


def _entropy(site: dict, like: jax.Array) -> jax.Array:
    """``H(p(c))`` of a model's code site, broadcast to ``like``'s shape: closed form where
    the distribution has one, else ``-log p(c)`` at the drawn code (its unbiased estimate)."""
    try:
        entropy = site["fn"].entropy()
    except NotImplementedError:
        entropy = -jax.lax.stop_gradient(site["fn"].log_prob(site["value"]))
    return jnp.broadcast_to(entropy, jnp.shape(like))


def _code_names(codes: Any) -> tuple[str, ...] | None:
    if codes is None:
        return None
    codes = (codes,) if isinstance(codes, str) else tuple(codes)
    if not codes or not all(isinstance(c, str) and c for c in codes):
        raise ConfigError(
            f"codes must be None (the guide's sample sites) or names of the model's code "
            f"sites, e.g. ('c_cat0', 'c_cont0'); got {codes!r}"
        )
    return codes


def _scale(site: dict) -> Any:
    return 1.0 if site.get("scale") is None else site["scale"]


def mutual_information_bound(
    rng_key: jax.Array,
    model_trace: dict,
    guide: Callable,
    args: tuple,
    kwargs: dict[str, Any],
    *,
    codes: Sequence[str] | None = None,
    site: str = "x",
) -> jax.Array:
    """InfoGAN's ``L_I = E[log Q(c | x)] + H(c)`` (Chen et al. 2016, eq. 5) at one run of a
    generator: the guide run on the run's sample ``x`` (in place of the data batch, the
    guide's first argument) with the code sites conditioned on the run's codes.

    Each code site adds ``scale * sum log q(c | x)`` over the guide's batch and ``scale *
    sum H(p(c))`` over the model's (closed-form entropies where the distribution has one),
    ``scale`` the ``"data"`` plate's ``N / batch``: a per-dataset estimate, ``N`` times the
    batch mean, in nats. Differentiable in the guide's and (through ``x``) the generator's
    parameters; a scalar.

    Args:
        rng_key: Key of the guide's other draws (its code sites are conditioned).
        model_trace: A trace of the model (its codes, its ``site`` and their distributions).
        guide: ``guide(x, *args[1:], **kwargs)``, sampling the code sites from ``q(c | x)``.
        args, kwargs: The model's arguments (the data batch first).
        codes: The code sites; ``None``: every sample site of the model the guide samples.
        site: The model's deterministic site holding ``x = G(z, c)``.

    Raises:
        ConfigError: ``site`` not a deterministic site of the model, a code that is not a
            sample site of the model, a code the guide does not sample (``None``: a guide
            that samples none of the model's sites).
    """
    codes = _code_names(codes)
    node = model_trace.get(site)
    if node is None or node["type"] != "deterministic":
        raise ConfigError(
            f"InfoGAN reads x = G(z, c) at a deterministic site of the model; {site!r} is "
            f"{'missing' if node is None else 'not one'} (write numpyro.deterministic({site!r}, "
            "x))"
        )
    latents = {name: s for name, s in model_trace.items() if s["type"] == "sample"}
    wanted = tuple(latents) if codes is None else codes
    missing = [c for c in wanted if c not in latents]
    if missing:
        raise ConfigError(
            f"the model has no code site {missing[0]!r} (its sample sites: "
            f"{', '.join(latents) or 'none'}); InfoGAN's codes are sample sites of the generator"
        )
    values = {c: latents[c]["value"] for c in wanted}
    conditioned = handlers.seed(handlers.condition(guide, data=values), rng_key)
    guide_trace = handlers.trace(conditioned).get_trace(node["value"], *args[1:], **kwargs)
    sampled = [c for c in wanted if c in guide_trace and guide_trace[c]["type"] == "sample"]
    if codes is None and not sampled:
        raise ConfigError(
            f"the guide samples none of the model's sites ({', '.join(latents) or 'none'}); "
            "InfoGAN's guide is q(c | x), sampling the code sites"
        )
    if codes is not None and len(sampled) < len(codes):
        absent = next(c for c in codes if c not in sampled)
        raise ConfigError(
            f"the guide does not sample the code site {absent!r}; InfoGAN's guide is "
            "q(c | x), sampling every code"
        )
    total = jnp.zeros((), dtype=jnp.result_type(node["value"]))
    for name in sampled:
        p, q = latents[name], guide_trace[name]
        log_q = q["fn"].log_prob(q["value"])  # (batch,)
        total = total + jnp.sum(_scale(q) * log_q) + jnp.sum(_scale(p) * _entropy(p, log_q))
    return total


@dataclass(frozen=True, eq=False)
class InfoGAN:
    """InfoGAN (Chen et al. 2016): :class:`Adversarial`'s game with the generator's loss
    lowered by ``lambda`` times the mutual-information bound ``L_I`` of the codes.

    ``min_{G, Q} max_D V(D, G) - lambda L_I(G, Q)`` (the paper's eq. 6): the critic's loss is
    the game's; the generator player (the generator's and the guide's parameters) minimises
    ``generator loss - lambda L_I`` (:func:`mutual_information_bound`, on the same run of
    the model the critic scores). ``lambda = 1`` is the paper's choice for categorical
    codes (they take it smaller for continuous ones).

    Args:
        critic: The critic network (see :class:`Adversarial`).
        loss: The adversarial loss (the paper's: ``"nonsaturating"``).
        info_weight: ``lambda >= 0``.
        gradient_penalty: As :class:`Adversarial`'s.
        n_critic: Critic updates per generator update, used by :meth:`groups`.
        codes: The model's code sites; ``None``: every sample site of the model that the
            guide samples.
        site: The model's deterministic site holding the samples.

    Call ``infogan(rng_key, model, guide, *args, player=None, **kwargs)`` -> ``{"critic":
    ..., "generator": ..., "mutual_information": L_I}``; with ``player="critic"`` only the
    critic's entry, with ``player="generator"`` the generator's and ``L_I`` (no group's
    loss: a diagnostic, per dataset as the losses are, which the trainer logs per example
    as ``mutual_information``, the ``reported`` entry).

    Raises:
        ConfigError: A negative or non-finite ``info_weight``, ``codes`` not site names, and
            :class:`Adversarial`'s errors; when called, those of
            :func:`mutual_information_bound`.
    """

    critic: Any
    loss: str = "nonsaturating"
    info_weight: float = 1.0
    gradient_penalty: float | None = None
    n_critic: int = 1
    codes: tuple[str, ...] | None = None
    site: str = "x"
    players = PLAYERS
    param_prefixes = (CRITIC,)
    reported = (MUTUAL_INFORMATION,)  # logged by the trainer beside the losses

    def __post_init__(self) -> None:
        object.__setattr__(self, "info_weight", check_weight(self.info_weight, "info_weight"))
        object.__setattr__(self, "codes", _code_names(self.codes))
        adversarial = Adversarial(
            self.critic, loss=self.loss, gradient_penalty=self.gradient_penalty,
            n_critic=self.n_critic, site=self.site,
        )  # fmt: skip
        object.__setattr__(self, "_adversarial", adversarial)

    def groups(self, **options: Any) -> list[Group]:
        """The trainer's parameter groups (see :meth:`Adversarial.groups`): the guide's
        parameters are the generator player's."""
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
        # The game's key is the same whichever player asks: the critic scores the same run.
        game_key, guide_key = jax.random.split(rng_key)
        if player not in (None, GENERATOR):  # the critic's game alone (or the refusal)
            return self._adversarial(game_key, model, guide, *args, player=player, **kwargs)
        tracer = handlers.trace(model)  # the run the critic scores, codes and all
        losses = self._adversarial(game_key, tracer, guide, *args, player=player, **kwargs)
        info = mutual_information_bound(
            guide_key, tracer.trace, guide, args, kwargs, codes=self.codes, site=self.site
        )
        losses[GENERATOR] = losses[GENERATOR] - self.info_weight * info
        losses[MUTUAL_INFORMATION] = info
        return losses
