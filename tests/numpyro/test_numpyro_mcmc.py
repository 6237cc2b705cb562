"""NUTS over the latents of probabilistic PCA recovers its exact posterior."""

import arviz as az
import jax
import numpy as np
import pytest

from ppgen.errors import ConfigError
from ppgen.inference.numpyro import compare_with_guide, mcmc_latents
from ppgen.models.numpyro import LinearGaussian


def test_nuts_recovers_the_exact_posterior_and_checks_a_guide(float64):
    lg = LinearGaussian(4, 2, seed=0)
    x = lg.b + jax.random.normal(jax.random.PRNGKey(1), (3, 4))
    # The weights held fixed come from `params` (here those of another model), not lg's own.
    start = LinearGaussian(4, 2, seed=5)
    params = {k: v for k, v in lg.get_weights().items() if k in ("W", "b", "log_sigma")}
    idata = mcmc_latents(
        jax.random.PRNGKey(2),
        start.model,
        x,
        params=params,
        num_warmup=300,
        num_samples=400,
        num_chains=2,
    )
    z = idata.posterior["z"].values  # (chains, draws, batch, latent)
    assert z.shape == (2, 400, 3, 2)
    mean, cov = lg.exact_posterior(x)
    std = np.sqrt(np.diag(cov))

    lg.optimal_guide()  # the exact posterior: the comparison sees only MC error
    report = compare_with_guide(jax.random.PRNGKey(3), idata, lg.guide, x, num_samples=2000)
    assert report["max_r_hat"] < 1.05 and report["min_ess_bulk"] > 100
    # The MC error of a posterior mean is std / sqrt(ESS): allow 4 of them (the guide's 2000
    # independent draws add less); a sample std has relative error ~ 1 / sqrt(2 ESS).
    mc_error = std.max() / np.sqrt(report["min_ess_bulk"])
    draws = z.reshape(-1, 3, 2)
    np.testing.assert_allclose(draws.mean(0), mean, atol=4 * mc_error)
    np.testing.assert_allclose(draws.std(0), np.broadcast_to(std, (3, 2)), rtol=0.15)
    assert report["max_abs_mean_diff"] < 5 * mc_error
    assert abs(report["mean_std_ratio"] - 1) < 0.1
    # A guide at the prior is far off: the comparison must see it.
    prior = LinearGaussian(4, 2, seed=0)
    bad = compare_with_guide(jax.random.PRNGKey(3), idata, prior.guide, x, num_samples=2000)
    assert bad["mean_std_ratio"] > 1.5 and bad["max_abs_mean_diff"] > 0.3


def test_bad_options_are_config_errors():
    lg = LinearGaussian(3, 1, seed=0)
    x = lg.b[None, :]
    with pytest.raises(ConfigError):
        mcmc_latents(jax.random.PRNGKey(0), lg.model, x, num_samples=0)
    with pytest.raises(ConfigError, match="share no latent"):
        compare_with_guide(
            jax.random.PRNGKey(0), az.from_dict(posterior={"w": np.zeros((1, 5))}), lg.guide, x
        )
