"""Vectorised importance particles: per-datapoint log-density terms of any model/guide pair.

Shared by ``log_weights``, ``ELBO``, ``IWAE`` and the log-likelihood estimator (mirrors
:mod:`ppgen.inference.pyro.particles`). For ``z_k ~ q(z | x)``, ``k = 1..K``, drawn at once in
an outer ``"particles"`` plate (as Pyro's ``vectorize_particles`` does), each sample site
contributes a ``(K, batch)`` array of unscaled per-datapoint terms; their sum is
``log w_{k,i} = log p(x_i, z_k) - log q(z_k | x_i)``.

Everything here happens at trace time; under ``jit`` only the density arithmetic is left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.distributions import kl_divergence
from numpyro.distributions.util import is_identically_one

from ppgen.errors import ConfigError
from ppgen.inference.numpyro.handlers import replay, scale_latents

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
    """What one shape-only run of guide then model reveals about a program."""

    max_plate_nesting: int
    latents: tuple[str, ...]  # the model's unobserved sample sites, in model order


class ParticleTerms(NamedTuple):
    """Per-site ``(K, batch)`` terms whose sum is the log weight, and the data plate's scale."""

    terms: dict[str, jax.Array]
    data_scale: float  # num_data / batch: turns a minibatch sum into a dataset estimate
    # log q of each guide site drawn without a reparameterised sampler, reduced as ``terms``:
    # what a score-function estimator (ppgen.inference.numpyro.score) differentiates.
    nonreparam_log_q: dict[str, jax.Array] = {}


def is_latent(site: dict) -> bool:
    """An unobserved sample site."""
    return site["type"] == "sample" and not site["is_observed"]


def _vectorised(fn: Callable, num_particles: int, dim: int) -> Callable:
    def vectorised(*args: Any, **kwargs: Any) -> Any:
        with numpyro.plate("particles", num_particles, dim=dim):
            return fn(*args, **kwargs)

    return vectorised


def _run(rng_key, model, guide, args, kwargs, particles=None, beta=None) -> tuple[dict, dict]:
    """Trace ``guide``, then ``model`` with its latents replayed from the guide (:func:`replay`,
    which also replays ``condition``-ed guide sites), optionally in a particle plate."""
    if particles is not None:
        model, guide = (_vectorised(fn, *particles) for fn in (model, guide))
    if beta is not None:
        model, guide = scale_latents(model, guide, beta)
    guide_key, model_key = jax.random.split(rng_key)
    guide_tr = handlers.trace(handlers.seed(guide, guide_key)).get_trace(*args, **kwargs)
    model = replay(model, guide_tr)
    model_tr = handlers.trace(handlers.seed(model, model_key)).get_trace(*args, **kwargs)
    return model_tr, guide_tr


def structure(rng_key: jax.Array, model: Callable, guide: Callable, args, kwargs) -> Structure:
    """Plate nesting and latent sites, from a shape-only (``eval_shape``) run: no FLOPs."""
    found = []

    def probe(key, args, kwargs):
        model_tr, guide_tr = _run(key, model, guide, args, kwargs)
        dims = [
            frame.dim
            for tr in (model_tr, guide_tr)
            for site in tr.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
        ]
        latents = tuple(name for name, site in model_tr.items() if is_latent(site))
        found.append(Structure(-min(dims, default=0), latents))

    eqx.filter_eval_shape(probe, rng_key, args, kwargs)
    return found[0]


def analytic_kl_sites(model_trace: dict, guide_trace: dict) -> list[str]:
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
    guide_order = [name for name, site in guide_trace.items() if site["type"] == "sample"]
    sites, before = [], set()
    for name, site in model_trace.items():
        if not is_latent(site):
            continue
        guide_site = guide_trace.get(name)
        if (
            guide_site is not None
            and is_latent(guide_site)
            and before <= set(guide_order[: guide_order.index(name)])
        ):
            sites.append(name)
        before.add(name)
    return sites


def _data_dim(site: dict, has_data_plate: bool) -> int | None:
    """The dim of ``site``'s ``"data"`` plate; ConfigError if it must lie in one and does not."""
    dims = [frame.dim for frame in site["cond_indep_stack"] if frame.name == DATA]
    if has_data_plate and not dims:
        raise ConfigError(
            f"sample site {site['name']!r} lies outside the {DATA!r} plate; per-datapoint "
            f"weights need every site inside numpyro.plate({DATA!r}, ...) (a global latent "
            "has no per-datapoint weight)"
        )
    return dims[0] if dims else None


def _per_datapoint(log_prob, scale, data_scale, nesting, data_dim, shape) -> jax.Array:
    """Reduce a site's log-density to ``shape = (K, batch)``: sum every other plate dim.

    ``scale`` is the site's scale with the data plate's subsample scale divided out (what
    remains is e.g. a KL weight), so the result is per datapoint.
    """
    lp = jnp.asarray(log_prob)
    if scale is not None:
        scale = scale / data_scale if data_scale != 1.0 else scale
        if not is_identically_one(scale):
            lp = lp * scale
    ndim = nesting + 1  # particle dim + every plate dim
    if lp.ndim > ndim:
        lp = lp.sum(tuple(range(lp.ndim - ndim)))
    lp = lp.reshape((1,) * (ndim - lp.ndim) + lp.shape)
    keep = (0,) if data_dim is None else (0, ndim + data_dim)
    lp = lp.sum(tuple(i for i in range(ndim) if i not in keep), keepdims=True)
    lp = lp.reshape(lp.shape[0], -1)  # (K or 1, batch or 1)
    return jnp.broadcast_to(lp, shape)


def _log_prob(site: dict) -> jax.Array:
    if site["intermediates"]:
        return site["fn"].log_prob(site["value"], site["intermediates"])
    return site["fn"].log_prob(site["value"])


def _kl_or_none(guide_site: dict, model_site: dict) -> jax.Array | None:
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        return None


def particle_terms(
    rng_key: jax.Array,
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    beta: float | jax.Array | None = None,
    analytic_kl: bool = False,
    require_rsample: bool = False,
    info: Structure | None = None,
    per_datapoint: bool = True,
) -> ParticleTerms:
    """Per-site ``(K, batch)`` log-weight terms for ``K`` particles from the guide.

    Args:
        rng_key: PRNG key.
        model: Model callable (parameters already substituted).
        guide: Guide callable, run first; the model's latents take its values (:func:`replay`).
        args: Positional arguments of model and guide.
        kwargs: Keyword arguments of model and guide.
        num_particles: ``K``.
        beta: Optional weight of the latent sites' terms (see ``scale_latents``).
        analytic_kl: Replace ``log p(z) - log q(z)`` by ``-KL(q || p)`` where the pair has a
            registered ``kl_divergence`` and the swap is unbiased (:func:`analytic_kl_sites`).
        require_rsample: Raise ConfigError for a guide latent without a reparameterised
            sampler (the gradient of these objectives would be biased).
        info: The pair's :func:`structure`, when already known (saves its trace).
        per_datapoint: ``False``: each term is instead the site's scaled log-density summed
            over everything (particles included), the data plate's scale kept, with
            ``num_data / batch`` reported as 1 (what an ELBO needs; under ``jit`` the two
            compile to the same arithmetic).

    Returns:
        The terms by site name, ``num_data / batch``, and by site name the log q of the
        guide's sites without a reparameterised sampler (reduced as the terms).

    Raises:
        ConfigError: A site outside the ``"data"`` plate, or a model latent the guide
            does not sample.
    """
    info = structure(rng_key, model, guide, args, kwargs) if info is None else info
    nesting = info.max_plate_nesting
    particles = (num_particles, -(nesting + 1))
    if isinstance(beta, (int, float)) and beta == 1:
        beta = None
    model_tr, guide_tr = _run(rng_key, model, guide, args, kwargs, particles, beta)

    data = model_tr.get(DATA)
    data = data if data is not None and data["type"] == "plate" else None
    if data is not None:
        size, subsample_size = data["args"]
        batch = int(data["value"].shape[0])
        data_scale = size / subsample_size if subsample_size not in (None, size) else 1.0
    else:
        batch, data_scale = 1, 1.0
    shape = (num_particles, batch)

    def reduce(value: jax.Array, site: dict) -> jax.Array:
        dim = _data_dim(site, data is not None)
        if not per_datapoint:
            scale = site["scale"]
            return jnp.sum(value if scale is None else value * scale)
        scale = data_scale if dim is not None else 1.0
        return _per_datapoint(value, site["scale"], scale, nesting, dim, shape)

    analytic = analytic_kl_sites(model_tr, guide_tr) if analytic_kl else []
    terms, nonreparam = {}, {}
    for name, site in model_tr.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"]:
            terms[name] = reduce(_log_prob(site), site)
            continue
        guide_site = guide_tr.get(name)
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
    for name, site in guide_tr.items():
        if name in model_tr or site["type"] != "sample":
            continue
        terms[name] = -reduce(_log_prob(site), site)  # an auxiliary guide latent: only -log q
        if not site["is_observed"] and not site["fn"].has_rsample:
            nonreparam[name] = -terms[name]
    return ParticleTerms(terms, float(data_scale) if per_datapoint else 1.0, nonreparam)
