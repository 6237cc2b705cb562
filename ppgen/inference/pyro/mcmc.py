"""Asymptotically exact posteriors of the latents, to check an amortized guide against.

With the network weights held fixed, ``p(z | x)`` for given observations is an ordinary
posterior; NUTS (Hoffman & Gelman 2014) samples it, and :func:`compare_with_guide` measures
how far the guide ``q(z | x)`` is from it (the amortization and approximation gaps of
Cremer, Li & Duvenaud 2018, *Inference Suboptimality in Variational Autoencoders*).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS

from ppgen.errors import ConfigError
from ppgen.inference.checks import check_count, check_mcmc_counts
from ppgen.inference.pyro.handlers import ParamSubstituteMessenger
from ppgen.inference.pyro.particles import is_latent
from ppgen.metrics import posterior_gap

if TYPE_CHECKING:  # ArviZ is imported when used: its import warns on stderr
    import arviz as az

__all__ = ["compare_with_guide", "mcmc_latents"]


def _fixed(
    fn: Callable, params: Mapping[str, Any] | None, args: tuple, kwargs: dict
) -> tuple[Callable, list[tuple[torch.nn.Parameter, torch.Tensor]]]:
    """``fn`` with every param site substituted by a constant (detached) value, and the
    ``pyro.module`` weights those values must be copied into.

    ``params`` (e.g. ``Trainer.params(state)``) take precedence; the other param sites keep
    their current values. Detaching keeps the sampler's gradients off the weights. A network
    registered with ``pyro.module`` computes with its own tensors whatever value its param
    site is given, so each of its parameters named in ``params`` is returned with the value,
    for :func:`_loaded` to copy in while the sampler runs.
    """
    with torch.no_grad(), poutine.block(), poutine.trace(param_only=True) as capture:
        fn(*args, **kwargs)
    values = {name: site["value"].detach() for name, site in capture.trace.nodes.items()}
    modules = []
    for name, value in (params or {}).items():
        value = value if torch.is_tensor(value) else torch.from_numpy(np.array(value))
        values[name] = value.detach()
        site = capture.trace.nodes.get(name)
        init = site["args"][1] if site is not None and len(site["args"]) > 1 else None
        if isinstance(init, torch.nn.Parameter):  # pyro.module's: the network's own tensor
            modules.append((init, values[name]))
    return ParamSubstituteMessenger(values)(fn), modules


@contextmanager
def _loaded(modules: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> Iterator[None]:
    """Copy the given values into ``pyro.module`` parameters; restore them on exit."""
    saved = [param.detach().clone() for param, _ in modules]
    try:
        with torch.no_grad():
            for param, value in modules:
                param.copy_(value.reshape(param.shape))
        yield
    finally:
        with torch.no_grad():
            for (param, _), old in zip(modules, saved, strict=True):
                param.copy_(old)


def _check_continuous(model: Callable, args: tuple, kwargs: dict) -> None:
    """ConfigError unless the model has a continuous latent site for NUTS to sample."""
    with torch.no_grad(), poutine.block(), torch.random.fork_rng(devices=[]):
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    latents = [name for name, site in trace.nodes.items() if is_latent(site)]
    continuous = [n for n in latents if not trace.nodes[n]["fn"].support.is_discrete]
    if not continuous:
        raise ConfigError(
            "the model has no continuous latent site for NUTS to sample (latent sites: "
            f"{latents or 'none'}; discrete ones are summed out); nothing to sample"
        )


def mcmc_latents(
    model: Callable,
    *args: Any,
    params: Mapping[str, Any] | None = None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample ``p(z | x)`` of every latent site of ``model(*args, **kwargs)`` with NUTS.

    Discrete latent sites are summed out by Pyro's parallel enumeration, as ``NUTS`` does
    (``pyro.infer.mcmc.util.initialize_model`` enumerates them, guessing the plate nesting),
    so the posterior holds the continuous sites. The chains run one after another in this
    process (``pyro.infer.MCMC`` would fork a process per chain when cores allow, which
    needs a picklable model and is slower than these small posteriors), each converted with
    ``arviz.from_pyro`` and joined along ``chain``. Draws come from torch's global generator.

    Args:
        model: A Pyro model with its observed data among ``args``/``kwargs``.
        *args: Passed to the model.
        params: Constants for param sites, by full site name (``Trainer.params(state)``,
            e.g. ``"decoder$$$layers.0.weight"``); the other param sites keep their current
            values. Parameters are never sampled. A ``pyro.module`` network's weights are
            copied into it for the run and restored afterwards.
        num_warmup: Adaptation steps per chain.
        num_samples: Draws kept per chain.
        num_chains: Chains, run one after another.
        **kwargs: Passed to the model. Leave ``num_data`` out: NUTS cannot subsample.

    Returns:
        ``arviz.InferenceData`` with ``posterior`` (one variable per latent site, dims
        ``(chain, draw, *site shape)``) and ``sample_stats``.

    Raises:
        ConfigError: Counts that :func:`~ppgen.inference.checks.check_mcmc_counts` refuses,
            or a model with no continuous latent site (nothing to sample).
    """
    num_warmup, num_samples, num_chains = check_mcmc_counts(num_warmup, num_samples, num_chains)
    fixed, modules = _fixed(model, params, args, kwargs)
    import arviz

    chains = []
    with _loaded(modules):
        _check_continuous(fixed, args, kwargs)
        for _ in range(num_chains):
            sampler = MCMC(
                NUTS(fixed),
                num_samples=num_samples,
                warmup_steps=num_warmup,
                disable_progbar=True,
            )
            sampler.run(*args, **kwargs)
            chains.append(arviz.from_pyro(sampler, log_likelihood=False))
    return chains[0] if len(chains) == 1 else arviz.concat(*chains, dim="chain")


def compare_with_guide(
    idata: az.InferenceData,
    guide: Callable,
    *args: Any,
    params: Mapping[str, Any] | None = None,
    num_samples: int = 1000,
    **kwargs: Any,
) -> dict[str, float]:
    """Per-dimension posterior means and standard deviations: MCMC vs the guide.

    Every latent site present in both ``idata.posterior`` and the guide is compared over all
    its dimensions; the guide's draws are taken in one vectorised pass (an outer
    ``pyro.plate``) from torch's global generator.

    Args:
        idata: What :func:`mcmc_latents` returned.
        guide: A Pyro guide over the same latent sites.
        *args: Passed to the guide (the data the posterior was sampled for).
        params: Constants for the guide's param sites, by full site name, as for
            :func:`mcmc_latents`.
        num_samples: Guide draws.
        **kwargs: Passed to the guide.

    Returns:
        The gap as :func:`ppgen.metrics.posterior_gap` computes it from the guide's draws
        (``max_abs_mean_diff``, ``mean_std_ratio``, the chains' ``max_r_hat``, ...).

    Raises:
        ConfigError: The guide draws no site of the posterior, or ``num_samples`` is not a
            positive integer.
    """
    num_samples = check_count("num_samples", num_samples)
    guide, modules = _fixed(guide, params, args, kwargs)
    with torch.no_grad(), poutine.block(), _loaded(modules):
        plain = poutine.trace(guide).get_trace(*args, **kwargs)
        dims = [f.dim for s in plain.nodes.values() if is_latent(s) for f in s["cond_indep_stack"]]
        dim = min((d for d in dims if d is not None), default=0) - 1
        with pyro.plate("particles", num_samples, dim=dim):
            draws = poutine.trace(guide).get_trace(*args, **kwargs)
    approx = {
        name: draws.nodes[name]["value"].expand(num_samples, *site["value"].shape).numpy()
        for name, site in plain.nodes.items()
        if is_latent(site)
    }
    return posterior_gap(idata, approx)
