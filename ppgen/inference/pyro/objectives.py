"""Variational objectives: callables ``loss = objective(model, guide, *args, **kwargs)``.

Each returns the negative bound for the whole data set, i.e. the per-datapoint bounds summed
over the minibatch and multiplied by the ``"data"`` plate's subsample scale
``num_data / batch``, as a differentiable scalar tensor to minimise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions.util import scale_and_mask
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from ppgen.errors import ConfigError
from ppgen.inference.pyro.handlers import is_latent, scale_latents, traces
from ppgen.inference.pyro.loglik import _log_weights

__all__ = ["ELBO", "IWAE"]


def _check_particles(num_particles: int) -> int:
    if int(num_particles) != num_particles or num_particles < 1:
        raise ConfigError(f"num_particles must be a positive integer, got {num_particles!r}")
    return int(num_particles)


def _log_prob_sum(site: Message) -> torch.Tensor:
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    return scale_and_mask(log_p, site["scale"], site["mask"]).sum()


def _analytic_kl_sites(model_trace: Trace, guide_trace: Trace) -> list[str]:
    """Latent sites whose ``E_q[log q - log p]`` may be replaced by ``KL(q || p)``.

    Valid when the model's ``p(z | parents)`` cannot depend on a latent the guide samples
    *after* ``z`` (else its parents are functions of ``z`` under ``q``). Sufficient check:
    every latent the model samples before ``z`` the guide also samples before ``z``. This
    admits every site of a one-layer VAE and ``z2`` but not ``z1`` of the two-layer one, whose
    guide ``q(z1|x) q(z2|z1)`` runs opposite to ``p(z2) p(z1|z2)``. The guide site must
    be sampled (not conditioned) for its expectation to be the KL.
    """
    guide_order = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample"]
    position = {name: i for i, name in enumerate(guide_order)}
    sites, before = [], set()
    for name, site in model_trace.nodes.items():
        if not is_latent(site):
            continue
        guide_site = guide_trace.nodes.get(name)
        if (
            guide_site is not None
            and not guide_site["is_observed"]
            and before <= set(guide_order[: position[name]])
        ):
            sites.append(name)
        before.add(name)
    return sites


class ELBO:
    """Evidence lower bound ``E_q[log p(x, z) - log q(z | x)] <= log p(x)``.

    Kingma & Welling 2014, with the latent terms weighted by ``beta`` (Higgins et al. 2017,
    beta-VAE; KL annealing is a schedule over ``beta``, Bowman et al. 2016):
    ``E_q[log p(x | z)] + beta * E_q[log p(z) - log q(z | x)]``. ``beta`` scales the latent
    sites of model and guide through effect handlers (:func:`handlers.scale_latents`).

    Args:
        num_particles: Monte Carlo draws per datapoint, vectorised in one pass.
        analytic_kl: Use ``torch.distributions.kl_divergence`` for latent sites where one is
            registered and valid (like ``pyro.infer.TraceMeanField_ELBO``), else Monte Carlo.
        beta: Default weight of the latent terms.

    Call as ``loss = elbo(model, guide, *args, beta=None, **kwargs)``: a ``beta`` keyword
    (e.g. an annealing schedule supplied per step by the trainer) overrides the default and is
    not passed on; every other argument goes to ``model`` and ``guide``.
    """

    def __init__(self, num_particles: int = 1, analytic_kl: bool = False, beta: float = 1.0):
        self.num_particles = _check_particles(num_particles)
        self.analytic_kl = bool(analytic_kl)
        if not beta >= 0:
            raise ConfigError(f"beta must be >= 0, got {beta!r}")
        self.beta = float(beta)

    def __repr__(self) -> str:
        return (
            f"ELBO(num_particles={self.num_particles}, analytic_kl={self.analytic_kl}, "
            f"beta={self.beta})"
        )

    def __call__(
        self,
        model: Callable,
        guide: Callable,
        *args: Any,
        beta: float | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """``-ELBO`` for the whole data set (a differentiable scalar)."""
        beta = self.beta if beta is None else float(beta)
        if beta != 1.0:
            model, guide = scale_latents(model, guide, beta)
        model_trace, guide_trace, _ = traces(model, guide, args, kwargs, self.num_particles)
        analytic = _analytic_kl_sites(model_trace, guide_trace) if self.analytic_kl else ()
        elbo = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if name in analytic:
                q = guide_trace.nodes[name]
                try:
                    kl = kl_divergence(q["fn"], site["fn"])
                except NotImplementedError:  # no closed form registered: Monte Carlo
                    analytic = [n for n in analytic if n != name]
                else:
                    elbo = elbo - scale_and_mask(kl, q["scale"], q["mask"]).sum()
                    continue
            elbo = elbo + _log_prob_sum(site)
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and not site_is_subsample(site) and name not in analytic:
                elbo = elbo - _log_prob_sum(site)
        return -elbo / self.num_particles


class IWAE:
    """Importance weighted bound ``E[log (1/K) sum_k w_k] <= log p(x)`` (Burda et al. 2015).

    ``w_k = p(x, z_k) / q(z_k | x)`` for ``K`` independent ``z_k ~ q(z | x)``; the bound
    increases with ``K`` and equals the ELBO at ``K = 1``.

    Args:
        num_particles: K, drawn in one vectorised pass.
    """

    def __init__(self, num_particles: int = 5):
        self.num_particles = _check_particles(num_particles)

    def __repr__(self) -> str:
        return f"IWAE(num_particles={self.num_particles})"

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``-sum_i logmeanexp_k log w_{k,i}`` times ``num_data / batch``."""
        k = self.num_particles
        log_w, scale = _log_weights(model, guide, args, kwargs, k)  # (k, batch)
        bound = torch.logsumexp(log_w, dim=0) - math.log(k)  # (batch,)
        return -scale * bound.sum()
