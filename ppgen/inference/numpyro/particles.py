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
import funsor
import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.contrib.funsor import enum, plate_to_enum_plate, to_funsor
from numpyro.contrib.funsor import trace as funsor_trace
from numpyro.distributions import TransformedDistribution, kl_divergence
from numpyro.distributions.util import is_identically_one

from ppgen.errors import ConfigError
from ppgen.inference.numpyro.handlers import replay, scale_latents

__all__ = [
    "ParticleTerms",
    "Structure",
    "analytic_kl_sites",
    "enumerated_sites",
    "is_latent",
    "particle_terms",
    "structure",
    "summed_out_terms",
]

DATA = "data"  # the plate over datapoints, by ppgen convention


class Structure(NamedTuple):
    """What one shape-only run of guide then model reveals about a program."""

    max_plate_nesting: int
    latents: tuple[str, ...]  # the model's unobserved sample sites, in model order
    enumerated: tuple[str, ...] = ()  # sites marked for parallel enumeration (model or guide)


class ParticleTerms(NamedTuple):
    """Per-site ``(K, batch)`` terms whose sum is the log weight, and the data plate's scale.

    Where the guide enumerates a site, ``elbo_terms`` holds the ELBO's own terms (each the
    expectation of a cost under ``q`` of the enumerated values, which the stratified log
    weight does not weigh by); otherwise it is ``None`` and the ELBO is the mean of
    ``sum(terms)`` over particles.
    """

    terms: dict[str, jax.Array]
    data_scale: float  # num_data / batch: turns a minibatch sum into a dataset estimate
    elbo_terms: dict[str, jax.Array] | None = None
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


def _run(
    rng_key, model, guide, args, kwargs, particles=None, beta=None, enum_dim=None
) -> tuple[dict, dict]:
    """Trace ``guide``, then ``model`` with its latents replayed from the guide (:func:`replay`,
    which also replays ``condition``-ed guide sites), optionally in a particle plate and with
    the sites marked ``infer={"enumerate": "parallel"}`` enumerated from dim ``enum_dim``
    leftwards (``numpyro.contrib.funsor``'s ``enum``, its plates named, as
    ``TraceEnum_ELBO``)."""
    if particles is not None:
        model, guide = (_vectorised(fn, *particles) for fn in (model, guide))
    if beta is not None:
        model, guide = scale_latents(model, guide, beta)
    guide_key, model_key = jax.random.split(rng_key)
    if enum_dim is None:
        guide_tr = handlers.trace(handlers.seed(guide, guide_key)).get_trace(*args, **kwargs)
        model = replay(model, guide_tr)
        model_tr = handlers.trace(handlers.seed(model, model_key)).get_trace(*args, **kwargs)
        return model_tr, guide_tr
    with plate_to_enum_plate(), enum(first_available_dim=enum_dim):
        guide_tr = funsor_trace(handlers.seed(guide, guide_key)).get_trace(*args, **kwargs)
        plain = handlers.trace(handlers.seed(replay(model, guide_tr), model_key))
        model_tr = funsor_trace(plain).get_trace(*args, **kwargs)
    # funsor's trace keeps sample sites only; the plates' sizes come from the plain one
    model_tr.update((k, v) for k, v in plain.trace.items() if v["type"] == "plate")
    return model_tr, guide_tr


def enumerated_sites(model_trace: dict, guide_trace: dict) -> tuple[str, ...]:
    """The sites a run sums out: guide sites marked ``infer={"enumerate": "parallel"}`` and
    so-marked model latents the guide does not sample (``config_enumerate`` marks them).

    Raises:
        ConfigError: A site asks for another kind of enumeration (``"sequential"``).
    """
    names: list[str] = []
    for trace in (guide_trace, model_trace):
        for name, site in trace.items():
            if not is_latent(site) or name in names:
                continue
            how = site["infer"].get("enumerate")
            if how is None or (trace is model_trace and name in guide_trace):
                continue
            if how != "parallel":
                raise ConfigError(
                    f"site {name!r} asks for {how!r} enumeration; ppgen sums discrete sites "
                    "out by parallel enumeration only: infer={'enumerate': 'parallel'}"
                )
            names.append(name)
    return tuple(names)


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
        enumerated = enumerated_sites(model_tr, guide_tr)
        found.append(Structure(-min(dims, default=0), latents, enumerated))

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
            "has no per-datapoint weight; an autoguide over the joint latent vector, e.g. "
            "AutoDiagonalNormal, samples one: use AutoNormal or an amortized guide)"
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


def _is_transformed(fn: object) -> bool:
    """``fn`` is a ``TransformedDistribution`` (a flow), perhaps inside ``to_event``/``expand``."""
    while not isinstance(fn, TransformedDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, TransformedDistribution)


def _kl_or_none(guide_site: dict, model_site: dict) -> jax.Array | None:
    """``KL(q || p)`` where one is registered, else ``None`` (Monte Carlo instead).

    Raises:
        ConfigError: No KL is registered and ``q`` or ``p`` is a ``TransformedDistribution``
            (a flow posterior or prior): its KL has no closed form, so analytic KL was
            asked for where it cannot apply.
    """
    try:
        return kl_divergence(guide_site["fn"], model_site["fn"])
    except NotImplementedError:
        flows = [
            what
            for what, site in (("posterior q", guide_site), ("prior p", model_site))
            if _is_transformed(site["fn"])
        ]
        if flows:
            raise ConfigError(
                f"analytic KL for latent site {guide_site['name']!r}: its {' and '.join(flows)} "
                "is a TransformedDistribution (a normalizing flow), whose KL has no closed "
                "form; use the Monte Carlo KL (ELBO(analytic_kl=False); on the command line "
                "drop --analytic-kl)"
            ) from None
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

    **Enumeration.** Sites marked ``infer={"enumerate": "parallel"}`` (:func:`enumerated_sites`)
    are summed out exactly with ``numpyro.contrib.funsor``: its ``enum`` puts their values left
    of the particle plate, every log-density becomes a funsor with named plates and values,
    and ``funsor.sum_product`` contracts the factors that depend on them down to the
    ``(particles, data)`` plates, plates inside ``"data"`` product-contracted, as NumPyro's
    ``TraceEnum_ELBO`` does. The log weight of particle ``k`` is then
    ``log sum_e p(x, e, z_k) / q(z_k | x, e)`` over the enumerated values ``e`` (model-side
    ones marginalised; a guide-enumerated one stratified: its ``q(e | x)`` cancels), an
    unbiased weight of ``p(x)``. Where the guide enumerates, ``elbo_terms`` also holds
    ``sum_e q(e | x) [log p(x, e, z) - log q(e, z | x)]`` (the expectation of
    ``TraceEnum_ELBO``, per datapoint). The factors depending on an enumerated value share
    one scale (after the data plate's), applied outside the sum, as NumPyro requires;
    ``analytic_kl`` is not used in such a program (Monte Carlo throughout).

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
            compile to the same arithmetic; where the guide enumerates, only
            ``elbo_terms``).

    Returns:
        The terms by site name, ``num_data / batch``, and by site name the log q of the
        guide's sites without a reparameterised sampler (reduced as the terms).

    Raises:
        ConfigError: A site outside the ``"data"`` plate, a model latent the guide
            neither samples nor enumerates, or enumerated factors with different scales.
    """
    info = structure(rng_key, model, guide, args, kwargs) if info is None else info
    nesting = info.max_plate_nesting
    particles = (num_particles, -(nesting + 1))
    enum_dim = particles[1] - 1 if info.enumerated else None
    if isinstance(beta, (int, float)) and beta == 1:
        beta = None
    model_tr, guide_tr = _run(rng_key, model, guide, args, kwargs, particles, beta, enum_dim)

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
        if enum_dim is not None:  # checked here, computed by summed_out_terms
            return jnp.zeros(())
        if not per_datapoint:
            scale = site["scale"]
            return jnp.sum(value if scale is None else value * scale)
        scale = data_scale if dim is not None else 1.0
        return _per_datapoint(value, site["scale"], scale, nesting, dim, shape)

    def log_prob(site: dict) -> jax.Array | None:
        return None if enum_dim is not None else _log_prob(site)

    for name, site in guide_tr.items():  # the guide's own globals first: name the cause
        if site["type"] == "sample" and name not in model_tr:
            _data_dim(site, data is not None)
    summed = set(info.enumerated)
    analytic = analytic_kl_sites(model_tr, guide_tr) if analytic_kl and not summed else []
    terms, nonreparam = {}, {}
    for name, site in model_tr.items():
        if site["type"] != "sample":
            continue
        if site["is_observed"] or name in summed:
            terms[name] = reduce(log_prob(site), site)
            continue
        guide_site = guide_tr.get(name)
        if guide_site is None or guide_site["type"] != "sample":
            raise ConfigError(
                f"the guide does not sample the model's latent site {name!r}; "
                "every latent of the model needs a site of the same name in the guide "
                "(or infer={'enumerate': 'parallel'} on a discrete one, to sum it out); if "
                f"{name!r} is data, pass it with the rest of the data (the same layout to "
                "init and train_epoch, e.g. a tuple (x, y))"
            )
        if require_rsample and not guide_site["is_observed"] and not guide_site["fn"].has_rsample:
            raise ConfigError(
                f"guide site {name!r} ({type(guide_site['fn']).__name__}) has no "
                "reparameterised sampler; ELBO and IWAE need reparameterisable latents "
                "(infer={'enumerate': 'parallel'} on a discrete one sums it out; or use the "
                "score-function objectives NVIL or VIMCO)"
            )
        kl = _kl_or_none(guide_site, site) if name in analytic else None
        log_q = None if kl is not None else reduce(log_prob(guide_site), guide_site)
        if kl is not None:
            terms[name] = -reduce(kl, guide_site)
        else:
            terms[name] = reduce(log_prob(site), site) - log_q
        if enum_dim is None and not guide_site["is_observed"] and not guide_site["fn"].has_rsample:
            nonreparam[name] = reduce(_log_prob(guide_site), guide_site) if log_q is None else log_q
    for name, site in guide_tr.items():
        if name in model_tr or site["type"] != "sample":
            continue
        terms[name] = -reduce(log_prob(site), site)  # an auxiliary guide latent: only -log q
        if enum_dim is None and not site["is_observed"] and not site["fn"].has_rsample:
            nonreparam[name] = -terms[name]
    if enum_dim is not None:
        out = summed_out_terms(model_tr, guide_tr, data_scale, shape, per_datapoint)
        if per_datapoint:
            return out
        total = {name: jnp.sum(term) * data_scale for name, term in out.terms.items()}
        elbo = out.elbo_terms and {n: jnp.sum(t) * data_scale for n, t in out.elbo_terms.items()}
        return ParticleTerms(total, 1.0, elbo)
    scale = float(data_scale) if per_datapoint else 1.0
    return ParticleTerms(terms, scale, nonreparam_log_q=nonreparam)


def _to_batch(value: funsor.Funsor, shape: tuple[int, int]) -> jax.Array:
    """A funsor over (some of) the ``"particles"`` and ``"data"`` plates, every other input
    summed out, as a ``(K, batch)`` array."""
    other = frozenset(value.inputs) - {"particles", DATA}
    if other:
        value = value.reduce(funsor.ops.add, other)
    kept = tuple(name for name in ("particles", DATA) if name in value.inputs)
    data = jnp.asarray(value.align(kept).data if kept else funsor.to_data(value))
    if "particles" not in kept:
        data = data[None]
    if DATA not in kept:
        data = data[..., None]
    return jnp.broadcast_to(data, shape)


def summed_out_terms(
    model_trace: dict,
    guide_trace: dict,
    data_scale: float,
    shape: tuple[int, int],
    weights: bool = True,
) -> ParticleTerms:
    """Per-datapoint terms of an enumerated run, its enumerated values summed out.

    The factors that depend on an enumerated value (and the enumerated sites' own) become
    one term, keyed by the enumerated sites' names joined with ``"+"``: ``s * log sum_e
    prod_f f(e)`` over the model's factors and the guide's ``1 / q`` of its other sites,
    contracted to the ``(particles, data)`` plates by ``funsor.sum_product.sum_product``
    (``s``: their common per-datapoint scale). A guide-enumerated site's own ``q(e | x)`` is
    left out of the weight (stratified over ``e``) and weighs ``elbo_terms`` instead: every
    cost ``c`` of the ELBO (model factors, the model-enumerated ones contracted first, and
    ``-log q``) enters as ``sum_e q(e | x) c(e)``, ``q`` marginalised to the values ``c``
    depends on, as NumPyro's ``TraceEnum_ELBO`` weighs it.

    Args:
        model_trace: The model's trace of an enumerated run (``numpyro.contrib.funsor``).
        guide_trace: The guide's.
        data_scale: ``num_data / batch`` of the data plate.
        shape: ``(K, batch)``.
        weights: ``False``: where the guide enumerates, only ``elbo_terms`` (``terms`` is
            then empty: an ELBO needs no weight).

    Raises:
        ConfigError: The factors that depend on an enumerated value have different scales.
    """

    def enumerated(trace: dict, other: dict | None) -> list[str]:
        return [
            name
            for name, site in trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and site["infer"].get("enumerate") == "parallel"
            and (other is None or name not in other)
        ]

    guide_enum, model_enum = enumerated(guide_trace, None), enumerated(model_trace, guide_trace)
    sum_vars = frozenset(guide_enum) | frozenset(model_enum)
    key = "+".join([*guide_enum, *model_enum])
    plates = frozenset(
        frame.name
        for trace in (model_trace, guide_trace)
        for site in trace.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
    )
    kept = frozenset({"particles", DATA})

    def common_scale(scales: list) -> Any:
        numbers = {float(s) for s in scales if not isinstance(s, jax.Array)}
        arrays = {id(s) for s in scales if isinstance(s, jax.Array)}
        if len(numbers) + len(arrays) > 1:
            raise ConfigError(
                f"the sites that depend on the enumerated {key!r} have different scales; "
                "summing a site out needs one common scale, as in NumPyro's TraceEnum_ELBO "
                "(a beta != 1 would weigh latents and not the likelihood)"
            )
        return scales[0] if scales else 1.0

    def contract(factors: list, eliminate: frozenset, keep: frozenset = kept) -> funsor.Funsor:
        """``log sum prod`` of the factors over ``eliminate`` and the plates not in ``keep``."""
        inputs = frozenset().union(*(f.inputs for f in factors))
        with funsor.interpretations.normalize:
            out = funsor.sum_product.sum_product(
                funsor.ops.logaddexp,
                funsor.ops.add,
                factors,
                plates=(inputs | keep) & plates,
                eliminate=(inputs & eliminate) | ((inputs & plates) - keep),
            )
        return funsor.optimizer.apply_optimizer(out)

    log_w, factors, scales = {}, [], []  # the log weight
    costs, model_factors, model_scales = [], [], []  # the ELBO, if the guide enumerates
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        own = model_enum if trace is model_trace else guide_enum
        for name, site in trace.items():
            if site["type"] != "sample":
                continue
            scale = 1.0 if site["scale"] is None else site["scale"]
            if any(frame.name == DATA for frame in site["cond_indep_stack"]) and data_scale != 1:
                scale = scale / data_scale
            lp = to_funsor(_log_prob(site), funsor.Real, site["infer"]["dim_to_name"])
            lp = lp if sign > 0 else -lp
            is_own = name in own
            depends = not sum_vars.isdisjoint(lp.inputs)
            if trace is guide_trace and is_own:
                pass  # stratified: q(e | x) is not a factor of the weight
            elif is_own or depends:
                factors.append(lp)
                scales.append(scale)
            else:
                log_w[name] = log_w.get(name, 0.0) + scale * _to_batch(lp, shape)
            if not guide_enum:
                continue
            if trace is model_trace and (is_own or not lp.inputs.keys().isdisjoint(model_enum)):
                model_factors.append(lp)
                model_scales.append(scale)
            else:
                costs.append((name, lp * scale))
    if not weights and guide_enum:
        log_w = {}
    elif factors:
        weight = contract(factors, sum_vars)
        log_w[key] = common_scale(scales) * _to_batch(weight, shape)
    if not guide_enum:
        return ParticleTerms(log_w, float(data_scale))

    if model_factors:
        marginal = contract(model_factors, frozenset(model_enum))
        costs.append((key, marginal * common_scale(model_scales)))
    q_factors = [
        to_funsor(
            _log_prob(guide_trace[name]), funsor.Real, guide_trace[name]["infer"]["dim_to_name"]
        )
        for name in guide_enum
    ]
    elbo = {}
    for name, cost in costs:
        cost_vars = frozenset(cost.inputs)
        if not cost_vars.isdisjoint(guide_enum):  # weigh by q of the values it depends on
            log_q = contract(q_factors, frozenset(guide_enum) - cost_vars, cost_vars & plates)
            cost = cost * funsor.ops.exp(log_q)
        elbo[name] = elbo.get(name, 0.0) + _to_batch(cost, shape)
    return ParticleTerms(log_w, float(data_scale), elbo)
