"""Vectorised importance particles: per-datapoint log-density terms of any model/guide pair
(mirrors :mod:`ppgen.inference.numpyro.particles`).

Shared by ``log_weights``, ``ELBO``, ``IWAE`` and the log-likelihood estimator. For
``z_k ~ q(z | x)``, ``k = 1..K``, drawn at once in an outer ``"particles"`` plate (as
``Trace_ELBO(vectorize_particles=True)`` does), each sample site contributes a ``(K, batch)``
tensor of unscaled per-datapoint terms; their sum is
``log w_{k,i} = log p(x_i, z_k) - log q(z_k | x_i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from ppgen.errors import ConfigError
from ppgen.inference.pyro.handlers import replay, scale_latents

__all__ = [
    "ParticleTerms",
    "Structure",
    "analytic_kl_sites",
    "is_latent",
    "particle_terms",
    "structure",
]

DATA = "data"  # the plate over datapoints, by ppgen convention


class Structure(NamedTuple):
    """What one run of guide then model reveals about a program."""

    max_plate_nesting: int
    latents: tuple[str, ...]  # the model's unobserved sample sites, in model order


class ParticleTerms(NamedTuple):
    """Per-site ``(K, batch)`` terms whose sum is the log weight, and the data plate's scale."""

    terms: dict[str, torch.Tensor]
    data_scale: float  # num_data / batch: turns a minibatch sum into a dataset estimate
    # log q of each guide site drawn without a reparameterised sampler, reduced as ``terms``:
    # what a score-function estimator (ppgen.inference.pyro.score) differentiates.
    nonreparam_log_q: dict[str, torch.Tensor] = {}


def is_latent(site: Message) -> bool:
    """An unobserved sample site that is not a plate's subsample draw."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def _vectorised(fn: Callable, num_particles: int, dim: int) -> Callable:
    def vectorised(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate("particles", num_particles, dim=dim):
            return fn(*args, **kwargs)

    return vectorised


def _run(model, guide, args, kwargs, particles=None, beta=None) -> tuple[Trace, Trace]:
    """Trace ``guide``, then ``model`` with its latents replayed from the guide (:func:`replay`,
    which also replays ``condition``-ed guide sites), optionally in a particle plate."""
    if particles is not None:
        model, guide = (_vectorised(fn, *particles) for fn in (model, guide))
    if beta is not None:
        model, guide = scale_latents(model, guide, beta)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def structure(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> Structure:
    """Plate nesting and latent sites, from one run of guide then model without gradients.

    As ``pyro.infer.ELBO._guess_max_plate_nesting``, this assumes a static plate structure.
    Unlike the NumPyro twin's shape-only run it computes everything once (Pyro has no
    shape-only mode), so :func:`particle_terms` skips it where it can. Its draws come from
    a fork of torch's generator: probing the structure never shifts the caller's random
    stream (a data-parallel process, whose batch is a share of the global one, then draws
    exactly what one process would).
    """
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
        model_trace, guide_trace = _run(model, guide, args, kwargs)
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    latents = tuple(name for name, site in model_trace.nodes.items() if is_latent(site))
    return Structure(-min(dims, default=0), latents)


def analytic_kl_sites(model_trace: Trace, guide_trace: Trace) -> list[str]:
    """Latent sites whose ``E_q[log q - log p]`` may be replaced by ``KL(q || p)``.

    Valid when the model's ``p(z | parents)`` cannot depend on a latent the guide samples
    *after* ``z`` (else its parents are functions of ``z`` under ``q``). Sufficient check:
    every latent the model samples before ``z`` the guide also samples before ``z``. This
    admits every site of a one-layer VAE and ``z2`` but not ``z1`` of the two-layer one, whose
    guide ``q(z1|x) q(z2|z1)`` runs opposite to ``p(z2) p(z1|z2)``. The guide site must be
    sampled (not conditioned on given values) for its expectation to be the KL.

    Returns:
        The names, in model order.
    """
    guide_order = [name for name, site in guide_trace.nodes.items() if site["type"] == "sample"]
    sites, before = [], set()
    for name, site in model_trace.nodes.items():
        if not is_latent(site):
            continue
        guide_site = guide_trace.nodes.get(name)
        if (
            guide_site is not None
            and is_latent(guide_site)
            and before <= set(guide_order[: guide_order.index(name)])
        ):
            sites.append(name)
        before.add(name)
    return sites


def _data_frame(site: Message) -> CondIndepStackFrame | None:
    return next((frame for frame in site["cond_indep_stack"] if frame.name == DATA), None)


def _subsample_scale(frame: CondIndepStackFrame) -> float:
    """``num_data / batch`` of the data plate."""
    return frame.full_size / frame.size if frame.full_size is not None else 1.0


def _check_placement(site: Message, has_data_plate: bool) -> CondIndepStackFrame | None:
    """The site's ``"data"`` frame; ConfigError if it must lie in one and does not."""
    frame = _data_frame(site)
    if has_data_plate and frame is None:
        raise ConfigError(
            f"sample site {site['name']!r} lies outside the {DATA!r} plate; per-datapoint "
            f"weights need every site inside pyro.plate({DATA!r}, ...) (a global latent "
            "has no per-datapoint weight)"
        )
    return frame


def _per_datapoint(log_p, site, particle_dim, has_data_plate) -> torch.Tensor:
    """Reduce a site's log-density to ``(K or 1, batch or 1)``: sum every other dim.

    The data plate's subsample scale is divided out of the site's scale (what remains is
    e.g. a KL weight), so the result is per datapoint.
    """
    frame = _check_placement(site, has_data_plate)
    scale = site["scale"] if frame is None else site["scale"] / _subsample_scale(frame)
    log_p = scale_and_mask(log_p, scale, site["mask"])
    if not torch.is_tensor(log_p) or log_p.dim() == 0:
        return torch.as_tensor(log_p).reshape(1, 1)
    n = log_p.dim()
    keep = [d for d in (particle_dim, frame.dim if frame else None) if d is not None and -d <= n]
    summed = [a for a in range(n) if a - n not in keep]
    if summed:
        log_p = log_p.sum(summed)  # (particles?, batch?) in that order
    if particle_dim is None or particle_dim not in keep:
        log_p = log_p.unsqueeze(0)
    if frame is None or frame.dim not in keep:
        log_p = log_p.unsqueeze(-1)
    return log_p


def _log_prob(site: Message) -> torch.Tensor:
    return site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])


def _kl_or_none(guide_site: Message, model_site: Message) -> torch.Tensor | None:
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None


def particle_terms(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    beta: float | None = None,
    analytic_kl: bool = False,
    require_rsample: bool = False,
    info: Structure | None = None,
    per_datapoint: bool = True,
) -> ParticleTerms:
    """Per-site ``(K, batch)`` log-weight terms for ``K`` particles from the guide.

    With one particle and no ``info`` the pair runs as written, without a particle plate:
    Pyro's :func:`structure` costs a forward pass, which the common ``K = 1`` ELBO step
    need not pay (the NumPyro twin's is free, so it always uses the plate).

    Args:
        model: A Pyro model.
        guide: Its guide, run first; the model's latents take its values (:func:`replay`).
        args: Positional arguments of model and guide.
        kwargs: Keyword arguments of model and guide.
        num_particles: ``K``.
        beta: Optional weight of the latent sites' terms (see ``scale_latents``).
        analytic_kl: Replace ``log p(z) - log q(z)`` by ``-KL(q || p)`` where the pair has a
            registered ``kl_divergence`` and the swap is unbiased (:func:`analytic_kl_sites`).
        require_rsample: Raise ConfigError for a guide latent without a reparameterised
            sampler (the gradient of these objectives would be biased).
        info: The pair's :func:`structure`, when already known (saves its run).
        per_datapoint: ``False``: each term is instead the site's scaled log-density summed
            over everything (particles included), the data plate's scale kept, with
            ``num_data / batch`` reported as 1: all an ELBO needs, in fewer operations.

    Returns:
        The terms by site name, ``num_data / batch``, and by site name the log q of the
        guide's sites without a reparameterised sampler (reduced as the terms).

    Raises:
        ConfigError: A site outside the ``"data"`` plate, or a model latent the guide
            does not sample.
    """
    particles = None
    if num_particles > 1 or info is not None:
        info = structure(model, guide, args, kwargs) if info is None else info
        particles = (num_particles, -(info.max_plate_nesting + 1))
    if isinstance(beta, (int, float)) and beta == 1:
        beta = None
    model_trace, guide_trace = _run(model, guide, args, kwargs, particles, beta)
    particle_dim = None if particles is None else particles[1]

    sites = [
        site
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample" and not site_is_subsample(site)
    ]
    data = next((f for site in sites if (f := _data_frame(site)) is not None), None)
    batch, data_scale = (data.size, _subsample_scale(data)) if data is not None else (1, 1.0)
    shape = (num_particles, batch)

    def reduce(value: torch.Tensor, site: Message) -> torch.Tensor:
        if per_datapoint:
            return _per_datapoint(value, site, particle_dim, data is not None).expand(shape)
        _check_placement(site, data is not None)
        return scale_and_mask(value, site["scale"], site["mask"]).sum()

    analytic = analytic_kl_sites(model_trace, guide_trace) if analytic_kl else []
    terms, nonreparam = {}, {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            terms[name] = reduce(_log_prob(site), site)
            continue
        guide_site = guide_trace.nodes.get(name)
        if guide_site is None or guide_site["type"] != "sample":
            raise ConfigError(
                f"the guide does not sample the model's latent site {name!r}; "
                "every latent of the model needs a site of the same name in the guide"
            )
        if require_rsample and not guide_site["is_observed"] and not guide_site["fn"].has_rsample:
            raise ConfigError(
                f"guide site {name!r} ({type(guide_site['fn']).__name__}) has no "
                "reparameterised sampler; ELBO and IWAE need reparameterisable latents (for "
                "discrete ones use the score-function objectives NVIL or VIMCO)"
            )
        kl = _kl_or_none(guide_site, site) if name in analytic else None
        log_q = None if kl is not None else reduce(_log_prob(guide_site), guide_site)
        if kl is not None:
            terms[name] = -reduce(kl, guide_site)
        else:
            terms[name] = reduce(_log_prob(site), site) - log_q
        if not guide_site["is_observed"] and not guide_site["fn"].has_rsample:
            nonreparam[name] = reduce(_log_prob(guide_site), guide_site) if log_q is None else log_q
    for name, site in guide_trace.nodes.items():
        if name in model_trace.nodes or site["type"] != "sample" or site_is_subsample(site):
            continue
        terms[name] = -reduce(_log_prob(site), site)  # an auxiliary guide latent: only -log q
        if not site["is_observed"] and not site["fn"].has_rsample:
            nonreparam[name] = -terms[name]
    return ParticleTerms(terms, float(data_scale) if per_datapoint else 1.0, nonreparam)
