"""NUTS over the latents of probabilistic PCA recovers its known posterior; guide comparison."""

import math

import numpy as np
import pyro
import pytest
import torch

from ppgen.errors import ConfigError
from ppgen.inference.pyro import compare_with_guide, mcmc_latents
from ppgen.models.pyro import LinearGaussian


def test_nuts_recovers_the_exact_posterior(float64):
    pyro.set_rng_seed(0)
    m = LinearGaussian(4, 2, seed=0)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    before = {k: v.copy() for k, v in m.get_weights().items()}
    idata = mcmc_latents(m.model, x, num_warmup=150, num_samples=200, num_chains=2)
    assert idata.posterior["z"].shape == (2, 200, 3, 2)
    assert all(np.array_equal(before[k], v) for k, v in m.get_weights().items())  # fixed
    mean, cov = (t.detach().numpy() for t in m.exact_posterior(x))
    sd = np.sqrt(np.diag(cov))
    draws = idata.posterior["z"].values.reshape(-1, 3, 2)
    # Monte Carlo error of a mean is sd / sqrt(ESS); ESS >= 100 here, so 5 of them is 0.5 sd.
    assert np.abs(draws.mean(0) - mean).max() < 0.5 * sd.min()
    np.testing.assert_allclose(draws.std(0), np.broadcast_to(sd, (3, 2)), rtol=0.25)

    m.optimal_guide()
    report = compare_with_guide(idata, m.guide, x, num_samples=2000)
    assert report["max_r_hat"] < 1.05
    assert report["min_ess_bulk"] > 100
    assert report["max_abs_mean_diff"] < 0.5 * sd.min()
    assert report["mean_std_ratio"] == pytest.approx(1.0, abs=0.15)


def test_params_override_the_model_weights(float64):
    """``params`` (by site name, e.g. from Trainer.params) are the constants NUTS conditions on."""
    pyro.set_rng_seed(1)
    m, other = LinearGaussian(3, 1, seed=0), LinearGaussian(3, 1, seed=5)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(2))
    params = {k: torch.from_numpy(v) for k, v in other.get_weights().items()}
    idata = mcmc_latents(m.model, x, params=params, num_warmup=100, num_samples=150)
    mean, cov = other.exact_posterior(x)
    sd = math.sqrt(cov.item())
    draws = idata.posterior["z"].values.reshape(-1, 2, 1)
    assert np.abs(draws.mean(0) - mean.detach().numpy()).max() < 0.6 * sd
    # And the guide side: the same substitution applies to the guide's parameters.
    other.optimal_guide()
    params = {k: torch.from_numpy(v) for k, v in other.get_weights().items()}
    report = compare_with_guide(idata, m.guide, x, params=params, num_samples=1000)
    assert report["max_abs_mean_diff"] < 0.6 * sd


def test_bad_arguments():
    m = LinearGaussian(3, 1)
    with pytest.raises(ConfigError):
        mcmc_latents(m.model, torch.zeros(2, 3), num_samples=0)
