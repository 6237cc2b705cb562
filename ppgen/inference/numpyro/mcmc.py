"""Asymptotically exact posteriors of the latents, to check an amortised guide against.

With the network weights held fixed, ``p(z | x)`` of a few datapoints is sampled with NUTS
(Hoffman & Gelman, 2014) and returned as ArviZ ``InferenceData``; ``compare_with_guide``
then measures how far the guide's means and standard deviations are from it (the
amortisation and approximation gaps of Cremer, Li & Duvenaud, 2018, seen per dimension).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from numpyro import handlers
from numpyro.contrib.funsor import config_enumerate
from numpyro.infer import MCMC, NUTS, Predictive

from ppgen.errors import ConfigError
from ppgen.inference.checks import check_count, check_mcmc_counts
from ppgen.inference.numpyro.particles import is_latent
from ppgen.metrics import posterior_gap

if TYPE_CHECKING:  # ArviZ is imported when used: its import warns on stderr
    import arviz as az

__all__ = ["compare_with_guide", "mcmc_latents"]


def mcmc_latents(
    rng_key: jax.Array,
    model: Callable,
    *args: Any,
    params: dict | None = None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 1,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample every latent site of ``model(*args, **kwargs)`` with NUTS, weights fixed.

    Discrete latent sites are summed out by enumeration (``numpyro.contrib.funsor``'s
    ``config_enumerate`` marks them, and NumPyro's ``NUTS`` enumerates marked sites, finding
    the plate nesting itself), so the posterior holds the continuous sites.

    Args:
        rng_key: PRNG key.
        model: Model with observed data among ``args``/``kwargs`` (e.g. ``vae.model``).
        *args: Passed to the model.
        params: Param-site values to hold fixed (``Trainer.params(state)``); default: the
            model's own ``numpyro.param`` values.
        num_warmup: Adaptation steps per chain.
        num_samples: Draws kept per chain.
        num_chains: Chains; run in parallel when there are enough devices, else vectorised.
        **kwargs: Passed to the model. Leave ``num_data`` out: NUTS cannot subsample.

    Returns:
        ``arviz.InferenceData`` whose ``posterior`` holds each latent site.

    Raises:
        ConfigError: Counts that :func:`~ppgen.inference.checks.check_mcmc_counts` refuses,
            or a model with no continuous latent site (nothing to sample).
    """
    num_warmup, num_samples, num_chains = check_mcmc_counts(num_warmup, num_samples, num_chains)
    fixed = model if params is None else handlers.substitute(model, data=params)
    fixed = config_enumerate(fixed)  # every discrete latent summed out
    discrete: dict[str, bool] = {}  # latent site -> discrete, from a shape-only run

    def probe(key: jax.Array) -> None:
        trace = handlers.trace(handlers.seed(fixed, key)).get_trace(*args, **kwargs)
        discrete.update(
            (name, site["fn"].support.is_discrete)
            for name, site in trace.items()
            if is_latent(site)
        )

    jax.eval_shape(probe, rng_key)
    if all(discrete.values()):
        raise ConfigError(
            "the model has no continuous latent site for NUTS to sample (latent sites: "
            f"{list(discrete) or 'none'}; discrete ones are summed out); nothing to sample"
        )
    chain_method = "parallel" if jax.local_device_count() >= num_chains else "vectorized"
    mcmc = MCMC(
        NUTS(fixed),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(rng_key, *args, **kwargs)
    import arviz as az

    return az.from_numpyro(mcmc, log_likelihood=False)


def compare_with_guide(
    rng_key: jax.Array,
    idata: az.InferenceData,
    guide: Callable,
    *args: Any,
    params: dict | None = None,
    num_samples: int = 1000,
    **kwargs: Any,
) -> dict[str, float]:
    """Per-dimension posterior means and standard deviations: MCMC vs the guide.

    Every latent site present in both ``idata.posterior`` and the guide is compared over all
    its dimensions, from ``num_samples`` guide draws (``numpyro.infer.Predictive``, in
    parallel).

    Args:
        rng_key: PRNG key of the guide's draws.
        idata: What :func:`mcmc_latents` returned.
        guide: A NumPyro guide over the same latent sites.
        *args: Passed to the guide (the data the posterior was sampled for).
        params: Param-site values of the guide (``Trainer.params(state)``); default: the
            guide's own ``numpyro.param`` values.
        num_samples: Guide draws.
        **kwargs: Passed to the guide.

    Returns:
        :func:`ppgen.metrics.posterior_gap` of the guide's draws against the posterior
        (mean differences, the ratio of standard deviations, the chains' r-hat and ESS).

    Raises:
        ConfigError: No latent site in common with the posterior, or ``num_samples`` not a
            positive integer.
    """
    num_samples = check_count("num_samples", num_samples)
    predictive = Predictive(guide, params=params, num_samples=num_samples, parallel=True)
    draws = predictive(rng_key, *args, **kwargs)
    return posterior_gap(idata, {name: np.asarray(v) for name, v in draws.items()})
