"""Score-function gradients for guides that sample non-reparameterisable (discrete) sites
(mirrors :mod:`ppgen.inference.numpyro.score`).

``ELBO`` and ``IWAE`` differentiate through the guide's draws and so refuse a guide site
without a reparameterised sampler (a ``Categorical`` or ``Bernoulli``): its pathwise
gradient is zero and the estimate would be silently biased. The objectives here add the
score-function (REINFORCE; Williams, 1992) term ``A * grad log q(z | x)`` for those sites,
written as Pyro's ``Trace_ELBO`` writes it, a surrogate ``log q * stop_grad(A)`` (minus its
own value, so the loss *value* is the bound's), on the same vectorised particles
(:func:`~ppgen.inference.pyro.particles.particle_terms`); reparameterised sites keep their
pathwise gradient, so a guide may mix both.

- :class:`NVIL` (Mnih & Gregor, 2014): the ELBO with a per-datapoint learning signal
  ``l = log p(x, z) - log q(z | x)`` centred by a learned input-dependent baseline
  ``C_psi(x)`` and a moving average of what remains, and divided by a moving estimate of
  its standard deviation (variance normalisation).
- :class:`VIMCO` (Mnih & Rezende, 2016): the K-sample importance-weighted bound with the
  leave-one-out signal of each sample.

Why objectives rather than per-site baselines (Pyro's ``infer={"baseline": ...}``): ppgen's
objectives see one per-datapoint log weight, the sum over sites, and both papers centre that
whole signal, one baseline per datapoint; per-site Rao-Blackwellisation (Pyro's
``TraceGraph_ELBO``) needs the dependency graph, which NumPyro does not provide, and the two
backends keep one API. Per-site ``baseline`` declarations are therefore not read.

Baseline state: the moving averages are module-local param sites ``<name>$$$mean``,
``<name>$$$var`` and ``<name>$$$count`` that no loss depends on (so the optimiser never
moves them: their gradient is ``None``) and that the objective updates in place after each
differentiable evaluation, as Pyro's ``TraceGraph_ELBO`` keeps its decaying-average baseline
in the param store. The trainer carries them with the parameters, so checkpoints hold them
and a resumed run is exact. They are not updated under ``torch.no_grad()`` (evaluation);
``Trainer.init``'s one run of the objective counts as an update. One :class:`NVIL` instance
holds one state: give each run its own. Under ``devices > 1`` each process averages its own
rows. ``Trainer.params(state)`` then includes these sites and the baseline network's: pass
a model's own to ``model.bind`` (they are its parameters already, updated in place).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ppgen.errors import ConfigError
from ppgen.inference.checks import check_decay, check_num_particles
from ppgen.inference.pyro.particles import particle_terms
from ppgen.models.pyro.params import local_module, local_param

__all__ = ["NVIL", "VIMCO", "check_decay", "score_terms", "vimco_signal"]


def score_terms(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-datapoint log weights and log q of the non-reparameterised guide sites.

    Returns:
        ``(log_w, log_q, data_scale)``: ``log_w = log p(x_i, z_k) - log q(z_k | x_i)`` and
        ``log_q`` (zeros if every site is reparameterised), each ``(K, batch)`` and
        differentiable, and ``num_data / batch``.
    """
    out = particle_terms(model, guide, args, kwargs, num_particles=num_particles)
    log_w = sum(out.terms.values())
    log_q = sum(out.nonreparam_log_q.values(), torch.zeros_like(log_w))
    return log_w, log_q, out.data_scale


def _surrogate(log_q: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """``log_q * signal`` with the value 0 and the gradient ``signal * grad log_q``."""
    term = log_q * signal.detach()
    return term - term.detach()


@dataclass(frozen=True, eq=False)
class NVIL:
    """Negative ELBO with score-function gradients and NVIL's control variates
    (Mnih & Gregor, 2014, "Neural Variational Inference and Learning in Belief Networks",
    Algorithm 1; REINFORCE: Williams, 1992).

    For ``z_k ~ q(z | x)``: ``l_k = log p(x, z_k) - log q(z_k | x)`` (nats, per datapoint) and
    the guide's non-reparameterised sites get the gradient
    ``A_k * grad log q(z_k | x)`` with ``A_k = (l_k - C_psi(x) - c) / max(1, sqrt(v))``;
    ``c`` and ``v`` are moving averages (``decay``) of the mean and variance of
    ``l - C_psi(x)`` over the minibatch, bias-corrected as Adam's moments. The baseline
    network ``C_psi`` is trained by the same loss to minimise ``(l - c - C_psi(x))^2``.
    The baselines are fixed given the state before the step (they are updated after it), so
    the gradient is unbiased; variance normalisation divides it by a positive factor that
    does not depend on the draws of the step (an adaptive step size, as in the paper). With
    neither baseline the estimator is plain REINFORCE. The value is the negative ELBO,
    ``-(num_data / batch) * sum_i mean_k l_{k,i}``, so it also serves as a trainer's
    ``eval_objective`` (``ELBO`` refuses discrete guide sites).

    Args:
        baseline_net: Optional ``nn.Module`` mapping the first argument of model and guide,
            ``x`` of ``(batch, ...)``, to ``(batch,)`` or ``(batch, 1)`` (the paper used an
            MLP with one hidden layer of 100 tanh units); registered as the module-local
            param sites ``<name>_baseline$$$...`` so the trainer optimises it.
        num_particles: ``K`` draws per datapoint, averaged.
        decay: Moving-average factor of ``c`` and ``v`` (the paper's 0.8); ``None`` for no
            moving-average baseline and no variance normalisation.
        normalise_variance: Divide the signal by ``max(1, sqrt(v))``.
        name: Prefix of the objective's param sites.

    Raises:
        ConfigError: ``num_particles`` not a positive integer, ``decay`` outside ``[0, 1)``;
            when called, a baseline output of the wrong shape.
    """

    # A trainer without an eval_objective evaluates with this objective (its value is the
    # bound; the default ELBO() refuses the sampled discrete sites this one is for).
    evaluates_itself: ClassVar[bool] = True

    baseline_net: nn.Module | None = None
    num_particles: int = 1
    decay: float | None = 0.8
    normalise_variance: bool = True
    name: str = "nvil"
    _state: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_num_particles(self.num_particles)
        check_decay(self.decay)

    def _moments(self, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The moving-average state announced as param sites (created at the first call)."""
        if not self._state:
            for key in ("mean", "var", "count"):
                value = torch.zeros((), dtype=like.dtype, device=like.device)
                self._state[key] = value.requires_grad_()
        return {k: local_param(f"{self.name}$$${k}", v) for k, v in self._state.items()}

    def _baseline(self, x: torch.Tensor, batch: int) -> torch.Tensor:
        """``C_psi(x)``, ``(batch,)``, or a zero when there is no baseline network."""
        if self.baseline_net is None:
            return torch.zeros(())
        c_x = local_module(f"{self.name}_baseline", self.baseline_net)(x)
        if c_x.numel() != batch:
            raise ConfigError(
                f"baseline_net maps x to shape {tuple(c_x.shape)}; NVIL needs one value per "
                f"datapoint: ({batch},) or ({batch}, 1)"
            )
        return c_x.reshape(-1)

    def _centre(self, signal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(c, max(1, sqrt(v)))`` from the state before this step, then the state updated
        with ``signal``'s minibatch moments (not under ``torch.no_grad()``)."""
        one = torch.ones((), dtype=signal.dtype)
        if self.decay is None:
            return torch.zeros_like(one), one
        state, d = self._moments(signal), self.decay
        training = torch.is_grad_enabled()
        with torch.no_grad():
            count = state["count"]
            if count > 0:
                debias = 1 - d**count  # as Adam's: the averages start at 0
                mean = state["mean"] / debias
                scale = torch.sqrt(state["var"] / debias).clamp(min=1.0)
            else:  # nothing seen yet: no centring, no scaling
                mean, scale = torch.zeros_like(one), one
            if training:
                state["mean"].mul_(d).add_((1 - d) * signal.mean())
                state["var"].mul_(d).add_((1 - d) * signal.var(unbiased=False))
                state["count"].add_(1)
        return mean, scale if self.normalise_variance else one

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        log_w, log_q, data_scale = score_terms(model, guide, args, kwargs, self.num_particles)
        raw = log_w.detach()  # (K, batch): the learning signal l
        c_x = self._baseline(args[0], raw.shape[-1])
        mean, scale = self._centre(raw - c_x.detach())
        advantage = (raw - c_x.detach() - mean) / scale
        bound = (log_w + _surrogate(log_q, advantage)).sum() / self.num_particles
        loss = -data_scale * bound
        if self.baseline_net is not None:  # psi minimises (l - c - C_psi(x))^2; value 0
            fit = 0.5 * ((raw - mean - c_x) ** 2).mean(0).sum()
            loss = loss + data_scale * (fit - fit.detach())
        return loss


def vimco_signal(log_w: torch.Tensor) -> torch.Tensor:
    """VIMCO's per-sample learning signal ``L - L_{-k}`` (Mnih & Rezende, 2016, eq. 10).

    ``L = log mean_j w_j``; ``L_{-k}`` is the same with ``log w_k`` replaced by the mean of
    the other ``K - 1`` log weights (a geometric-mean estimate of ``w_k`` that does not
    depend on ``z_k``).

    Args:
        log_w: ``(K, batch)`` log weights, ``K >= 2`` (no gradient flows through).

    Returns:
        ``(K, batch)``.
    """
    lw = log_w.detach()
    k = lw.shape[0]
    loo = (lw.sum(0, keepdim=True) - lw) / (k - 1)  # (K, batch): mean of the others
    eye = torch.eye(k, dtype=torch.bool, device=lw.device).unsqueeze(-1)  # (K, K, 1)
    held_out = torch.where(eye, loo.unsqueeze(1), lw.unsqueeze(0))  # [k, j]: w_j, w_k -> loo
    bound = torch.logsumexp(lw, 0)  # the log K cancels in the difference
    return bound.unsqueeze(0) - torch.logsumexp(held_out, 1)


@dataclass(frozen=True)
class VIMCO:
    """Negative importance-weighted bound with VIMCO's score-function gradients
    (Mnih & Rezende, 2016, "Variational Inference for Monte Carlo Objectives").

    ``L_K(x) = log (1/K) sum_k w_k``, ``w_k = p(x, z_k) / q(z_k | x)``, as :class:`IWAE`;
    the non-reparameterised guide sites get ``sum_k (L - L_{-k}) grad log q(z_k | x)``
    (:func:`vimco_signal`), the rest of the gradient is the pathwise ``sum_k w~_k grad log
    w_k``. No state: each sample's baseline comes from the other ``K - 1``. The value is
    ``-(num_data / batch) * sum_i L_K(x_i)``.

    Args:
        num_particles: ``K >= 2``.

    Raises:
        ConfigError: ``num_particles`` is not an integer of at least 2.
    """

    # A trainer without an eval_objective evaluates with this objective (its value is the
    # bound; the default ELBO() refuses the sampled discrete sites this one is for).
    evaluates_itself: ClassVar[bool] = True

    num_particles: int = 5

    def __post_init__(self) -> None:
        check_num_particles(self.num_particles)
        if self.num_particles < 2:
            raise ConfigError("VIMCO needs num_particles >= 2 (a leave-one-out baseline)")

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        k = self.num_particles
        log_w, log_q, data_scale = score_terms(model, guide, args, kwargs, k)
        bound = torch.logsumexp(log_w, 0) - math.log(k)  # (batch,)
        surrogate = _surrogate(log_q, vimco_signal(log_w)).sum(0)
        return -data_scale * (bound + surrogate).sum()
