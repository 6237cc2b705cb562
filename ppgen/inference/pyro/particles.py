"""Vectorised importance particles: per-datapoint log-density terms of any model/guide pair
(mirrors :mod:`ppgen.inference.numpyro.particles`).

Shared by ``log_weights``, ``ELBO``, ``IWAE`` and the log-likelihood estimator. For
``z_k ~ q(z | x)``, ``k = 1..K``, drawn at once in an outer ``"particles"`` plate (as
``Trace_ELBO(vectorize_particles=True)`` does), each sample site contributes a ``(K, batch)``
tensor of unscaled per-datapoint terms; their sum is
``log w_{k,i} = log p(x_i, z_k) - log q(z_k | x_i)``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.ops import packed
from pyro.ops.contract import contract_to_tensor
from pyro.ops.rings import LogRing
from pyro.poutine.indep_messenger import CondIndepStackFrame
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites, site_is_subsample
from torch.distributions import TransformedDistribution, kl_divergence

from ppgen.errors import ConfigError
from ppgen.inference.pyro.handlers import replay, scale_latents

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
    """What one run of guide then model reveals about a program."""

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

    terms: dict[str, torch.Tensor]
    data_scale: float  # num_data / batch: turns a minibatch sum into a dataset estimate
    elbo_terms: dict[str, torch.Tensor] | None = None
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


def _run(
    model, guide, args, kwargs, particles=None, beta=None, enum_dim=None
) -> tuple[Trace, Trace]:
    """Trace ``guide``, then ``model`` with its latents replayed from the guide (:func:`replay`,
    which also replays ``condition``-ed guide sites), optionally in a particle plate and with
    the sites marked ``infer={"enumerate": "parallel"}`` enumerated from dim ``enum_dim``
    leftwards (guide first; the model continues its allocation, as ``TraceEnum_ELBO``)."""
    if particles is not None:
        model, guide = (_vectorised(fn, *particles) for fn in (model, guide))
    if beta is not None:
        model, guide = scale_latents(model, guide, beta)
    if enum_dim is not None:
        guide, model = poutine.enum(guide, first_available_dim=enum_dim), poutine.enum(model)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace


def enumerated_sites(model_trace: Trace, guide_trace: Trace) -> tuple[str, ...]:
    """The sites a run sums out: guide sites marked ``infer={"enumerate": "parallel"}`` and
    so-marked model latents the guide does not sample (``config_enumerate`` marks them).

    Raises:
        ConfigError: A site asks for another kind of enumeration (``"sequential"``).
    """
    names: list[str] = []
    for trace in (guide_trace, model_trace):
        for name, site in trace.nodes.items():
            if not is_latent(site) or name in names:
                continue
            how = site["infer"].get("enumerate")
            if how is None or (trace is model_trace and name in guide_trace.nodes):
                continue
            if how != "parallel":
                raise ConfigError(
                    f"site {name!r} asks for {how!r} enumeration; ppgen sums discrete sites "
                    "out by parallel enumeration only: infer={'enumerate': 'parallel'}"
                )
            names.append(name)
    return tuple(names)


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
    return Structure(-min(dims, default=0), latents, enumerated_sites(model_trace, guide_trace))


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
            "has no per-datapoint weight; an autoguide over the joint latent vector, e.g. "
            "AutoDiagonalNormal, samples one: use AutoNormal or an amortized guide)"
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


def _is_transformed(fn: object) -> bool:
    """``fn`` is a ``TransformedDistribution`` (a flow), perhaps inside ``to_event``/``expand``."""
    while not isinstance(fn, TransformedDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return isinstance(fn, TransformedDistribution)


def _kl_or_none(guide_site: Message, model_site: Message) -> torch.Tensor | None:
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

    **Enumeration.** Sites marked ``infer={"enumerate": "parallel"}`` (:func:`enumerated_sites`)
    are summed out exactly by Pyro's own machinery: ``poutine.enum`` puts their values left of
    the particle plate, the traces are packed and the factors that depend on them are
    contracted (``pyro.ops.contract.contract_to_tensor``) down to the ``(particles, data)``
    plates, plates inside ``"data"`` product-contracted, as ``TraceEnum_ELBO`` does. The log
    weight of particle ``k`` is then ``log sum_e p(x, e, z_k) / q(z_k | x, e)`` over the
    enumerated values ``e`` (model-side ones marginalised; a guide-enumerated one stratified:
    its ``q(e | x)`` cancels), an unbiased weight of ``p(x)``. Where the guide enumerates,
    ``elbo_terms`` also holds ``sum_e q(e | x) [log p(x, e, z) - log q(e, z | x)]`` (the DiCE
    expectation of ``TraceEnum_ELBO``, per datapoint). The factors depending on an
    enumerated value share one scale (after the data plate's), applied outside the sum, as
    Pyro requires; ``analytic_kl`` is not used in such a program (Monte Carlo throughout).
    A one-particle call without ``info`` that meets such a site reruns with :func:`structure`,
    from the random state it started with.

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
            ``num_data / batch`` reported as 1: all an ELBO needs, in fewer operations (where
            the guide enumerates, only ``elbo_terms``).

    Returns:
        The terms by site name, ``num_data / batch``, and by site name the log q of the
        guide's sites without a reparameterised sampler (reduced as the terms).

    Raises:
        ConfigError: A site outside the ``"data"`` plate, a model latent the guide
            neither samples nor enumerates, or enumerated factors with different scales.
    """
    particles = None
    if num_particles > 1 or info is not None:
        info = structure(model, guide, args, kwargs) if info is None else info
        particles = (num_particles, -(info.max_plate_nesting + 1))
    enum_dim = particles[1] - 1 if info is not None and info.enumerated else None
    scaled = None if isinstance(beta, (int, float)) and beta == 1 else beta
    rng_state = torch.random.get_rng_state() if info is None else None
    model_trace, guide_trace = _run(model, guide, args, kwargs, particles, scaled, enum_dim)
    if info is None and enumerated_sites(model_trace, guide_trace):
        # the plain one-particle run met a site to sum out: find where its values may go and
        # run again from the same random state (as if the plain run had not happened)
        torch.random.set_rng_state(rng_state)
        info = structure(model, guide, args, kwargs)
        return particle_terms(
            model,
            guide,
            args,
            kwargs,
            num_particles=num_particles,
            beta=beta,
            analytic_kl=analytic_kl,
            require_rsample=require_rsample,
            info=info,
            per_datapoint=per_datapoint,
        )
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
        if enum_dim is not None:  # checked here, computed by summed_out_terms
            _check_placement(site, data is not None)
            return torch.zeros(())
        if per_datapoint:
            return _per_datapoint(value, site, particle_dim, data is not None).expand(shape)
        _check_placement(site, data is not None)
        return scale_and_mask(value, site["scale"], site["mask"]).sum()

    def log_prob(site: Message) -> torch.Tensor | None:
        return None if enum_dim is not None else _log_prob(site)

    analytic = analytic_kl_sites(model_trace, guide_trace) if analytic_kl else []
    for name, site in guide_trace.nodes.items():  # the guide's own globals first: the cause
        if site["type"] == "sample" and not site_is_subsample(site) and name not in model_trace:
            _check_placement(site, data is not None)
    summed = _summed_out(model_trace, guide_trace) if enum_dim is not None else set()
    terms, nonreparam = {}, {}
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"] or name in summed:
            terms[name] = reduce(log_prob(site), site)
            continue
        guide_site = guide_trace.nodes.get(name)
        if guide_site is None or guide_site["type"] != "sample":
            raise ConfigError(
                f"the guide does not sample the model's latent site {name!r}; "
                "every latent of the model needs a site of the same name in the guide "
                "(or infer={'enumerate': 'parallel'} on a discrete one, to sum it out); if "
                f"{name!r} is data, pass it with the rest of the data (the same layout to "
                "init and train_epoch, e.g. a tuple (x, y))"
            )
        if (
            require_rsample
            and name not in summed
            and not guide_site["is_observed"]
            and not guide_site["fn"].has_rsample
        ):
            raise ConfigError(
                f"guide site {name!r} ({type(guide_site['fn']).__name__}) has no "
                "reparameterised sampler; ELBO and IWAE need reparameterisable latents "
                "(infer={'enumerate': 'parallel'} on a discrete one sums it out; or use the "
                "score-function objectives NVIL or VIMCO)"
            )
        kl = _kl_or_none(guide_site, site) if name in analytic and enum_dim is None else None
        log_q = None if kl is not None else reduce(log_prob(guide_site), guide_site)
        if kl is not None:
            terms[name] = -reduce(kl, guide_site)
        else:
            terms[name] = reduce(log_prob(site), site) - log_q
        if enum_dim is None and not guide_site["is_observed"] and not guide_site["fn"].has_rsample:
            nonreparam[name] = reduce(_log_prob(guide_site), guide_site) if log_q is None else log_q
    for name, site in guide_trace.nodes.items():
        if name in model_trace.nodes or site["type"] != "sample" or site_is_subsample(site):
            continue
        terms[name] = -reduce(log_prob(site), site)  # an auxiliary guide latent: only -log q
        if enum_dim is None and not site["is_observed"] and not site["fn"].has_rsample:
            nonreparam[name] = -terms[name]
    if enum_dim is not None:
        out = summed_out_terms(model_trace, guide_trace, data_scale, shape, per_datapoint)
        if per_datapoint:
            return out
        total = {name: term.sum() * data_scale for name, term in out.terms.items()}
        elbo = out.elbo_terms and {n: t.sum() * data_scale for n, t in out.elbo_terms.items()}
        return ParticleTerms(total, 1.0, elbo)
    scale = float(data_scale) if per_datapoint else 1.0
    return ParticleTerms(terms, scale, nonreparam_log_q=nonreparam)


def _summed_out(model_trace: Trace, guide_trace: Trace) -> set[str]:
    """Names of the sites an enumerated run holds every value of."""
    return {
        name
        for trace in (model_trace, guide_trace)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None
    }


def _to_batch(
    operands: list, target: str, shape: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """The product of packed tensors, summed over every dim but ``target``'s (the particle and
    data symbols, in that order), as a ``(K, batch)`` tensor (numbers alone: on ``like``'s
    device, in its dtype)."""
    tensors = [t for t in operands if torch.is_tensor(t) and t.dim()]
    factor = math.prod(float(t) for t in operands if not (torch.is_tensor(t) and t.dim()))
    if not tensors:
        return torch.full(shape, factor, dtype=like.dtype, device=like.device)
    dims = set("".join(t._pyro_dims for t in tensors))
    kept = "".join(d for d in target if d in dims)
    spec = ",".join(t._pyro_dims for t in tensors)
    out = torch.einsum(f"{spec}->{kept}", *tensors) * factor
    if target[0] not in dims:
        out = out.unsqueeze(0)
    if len(target) < 2 or target[1] not in dims:
        out = out.unsqueeze(-1)
    return out.expand(shape)


def summed_out_terms(
    model_trace: Trace,
    guide_trace: Trace,
    data_scale: float,
    shape: tuple[int, int],
    weights: bool = True,
) -> ParticleTerms:
    """Per-datapoint terms of an enumerated run, its enumerated values summed out.

    The factors that depend on an enumerated value (and the enumerated sites' own) become
    one term, keyed by the enumerated sites' names joined with ``"+"``: ``s * log sum_e
    prod_f f(e)`` over the model's factors and the guide's ``1 / q`` of its other sites,
    contracted to the ``(particles, data)`` ordinal by ``pyro.ops.contract.contract_to_tensor``
    (``s``: their common per-datapoint scale). A guide-enumerated site's own ``q(e | x)`` is
    left out of the weight (stratified over ``e``) and weighs ``elbo_terms`` instead: every
    cost ``c`` of the ELBO (model factors, the model-enumerated ones contracted first, and
    ``-log q``) enters as ``sum_e q(e | x) c(e)``, ``q`` marginalised to the values ``c``
    depends on, as ``pyro.infer.util.Dice`` weighs it in ``TraceEnum_ELBO``.

    Args:
        model_trace: The model's trace of an enumerated run (``poutine.enum``).
        guide_trace: The guide's.
        data_scale: ``num_data / batch`` of the data plate.
        shape: ``(K, batch)``.
        weights: ``False``: where the guide enumerates, only ``elbo_terms`` (``terms`` is
            then empty: an ELBO needs no weight).

    Raises:
        ConfigError: The factors that depend on an enumerated value have different scales.
    """
    model_trace = prune_subsample_sites(model_trace)
    guide_trace = prune_subsample_sites(guide_trace)
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    model_trace.pack_tensors()
    guide_trace.pack_tensors(model_trace.plate_to_symbol)
    symbols = model_trace.plate_to_symbol
    target = symbols["particles"] + symbols.get(DATA, "")
    plates = set(symbols.values())

    def enumerated(trace: Trace, other: Trace | None) -> dict[str, str]:
        return {
            site["infer"]["_enumerate_symbol"]: name
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
            and site["infer"].get("_enumerate_dim") is not None
            and (other is None or name not in other.nodes)
        }

    guide_enum, model_enum = enumerated(guide_trace, None), enumerated(model_trace, guide_trace)
    sum_dims = set(guide_enum) | set(model_enum)
    key = "+".join([*guide_enum.values(), *model_enum.values()])
    like = next(  # a log-density: the device and dtype of the terms
        (
            site["packed"]["unscaled_log_prob"]
            for trace in (model_trace, guide_trace)
            for site in trace.nodes.values()
            if site["type"] == "sample" and torch.is_tensor(site["packed"]["unscaled_log_prob"])
        ),
        torch.zeros(()),
    )
    sizes = {  # every plate's size, for the contractions' broadcasts
        symbols[f.name]: f.size
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for f in site["cond_indep_stack"]
        if f.vectorized
    }

    def contract(tree: OrderedDict, keep: set) -> torch.Tensor:
        for terms in tree.values():
            for t in terms:
                if torch.is_tensor(t):
                    sizes.update(zip(t._pyro_dims, t.shape, strict=True))
        ring = LogRing(dim_to_size=sizes)
        return contract_to_tensor(
            tree, sum_dims, target_ordinal=frozenset(target), target_dims=keep, ring=ring
        )

    def common_scale(scales: set[float]) -> float:
        if len(scales) > 1 or any(math.isnan(s) for s in scales):
            raise ConfigError(
                f"the sites that depend on the enumerated {key!r} have different scales "
                f"{sorted(scales)}; summing a site out needs one common scale, as in Pyro's "
                "TraceEnum_ELBO (a beta != 1 would weigh latents and not the likelihood)"
            )
        return next(iter(scales), 1.0)

    log_w, tree, scales = {}, OrderedDict(), set()  # the log weight
    costs, model_tree, model_scales = [], OrderedDict(), set()  # the ELBO, if guide_enum
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        own = model_enum if trace is model_trace else guide_enum
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            ordinal = frozenset(symbols[f.name] for f in site["cond_indep_stack"] if f.vectorized)
            scale = site["scale"]
            if torch.is_tensor(scale):
                scale = scale.item() if scale.dim() == 0 else math.nan
            if _data_frame(site) is not None:
                scale = scale / data_scale
            lp = site["packed"]["unscaled_log_prob"]
            is_own = name in own.values()
            masked = packed.scale_and_mask(lp, mask=site["packed"]["mask"])
            factor = lp if is_own else masked  # an enumerated site's own: unmasked, as Pyro's
            factor = factor if sign > 0 else packed.neg(factor)
            dims = set(getattr(lp, "_pyro_dims", ""))
            if trace is guide_trace and is_own:
                pass  # stratified: q(e | x) is not a factor of the weight
            elif is_own or dims & sum_dims:
                tree.setdefault(ordinal, []).append(factor)
                scales.add(scale)
            else:
                log_w[name] = log_w.get(name, 0.0) + scale * _to_batch(
                    [factor], target, shape, like
                )
            if not guide_enum:
                continue
            if trace is model_trace and (is_own or dims & set(model_enum)):
                model_tree.setdefault(ordinal, []).append(factor)
                model_scales.add(scale)
            else:
                cost = masked if sign > 0 else packed.neg(masked)
                costs.append((name, packed.scale_and_mask(cost, scale=scale)))
    if not weights and guide_enum:
        log_w = {}
    elif tree:
        log_w[key] = common_scale(scales) * _to_batch([contract(tree, set())], target, shape, like)
    if not guide_enum:
        return ParticleTerms(log_w, float(data_scale))

    if model_tree:
        marginal = contract(model_tree, set(guide_enum))
        costs.append((key, packed.scale_and_mask(marginal, scale=common_scale(model_scales))))
    q_tree = OrderedDict()
    for name, site in guide_trace.nodes.items():
        if name in guide_enum.values():
            ordinal = frozenset(symbols[f.name] for f in site["cond_indep_stack"] if f.vectorized)
            q_tree.setdefault(ordinal, []).append(site["packed"]["unscaled_log_prob"])
    elbo = {}
    for name, cost in costs:
        dims = set(getattr(cost, "_pyro_dims", ""))
        if dims & set(guide_enum):  # weigh by q of the enumerated values the cost depends on
            ordinal = frozenset(dims & plates) | frozenset(target)
            upstream = OrderedDict((t, q) for t, q in q_tree.items() if t <= ordinal)
            ring = LogRing(dim_to_size=sizes)
            log_q = contract_to_tensor(
                upstream,
                set(guide_enum),
                target_ordinal=ordinal,
                target_dims=dims & set(guide_enum),
                ring=ring,
            )
            prob = log_q.exp()
            prob._pyro_dims = log_q._pyro_dims
            value = _to_batch([prob, cost], target, shape, like)
        else:
            value = _to_batch([cost], target, shape, like)
        elbo[name] = elbo.get(name, 0.0) + value
    return ParticleTerms(log_w, float(data_scale), elbo)
