"""NUTS over the latents of probabilistic PCA recovers its known posterior on both backends,
with the weights given by ``params``; the guide comparison tells a good guide from a bad one."""

import arviz as az
import numpy as np
import pytest

from ppgen.errors import ConfigError

# Pyro's NUTS runs in Python: its run is shorter, so its Monte Carlo error and tolerances
# on standard deviations (of the draws, and the guide's over the draws') are larger.
RUN = {"pyro": (150, 200), "numpyro": (300, 400)}  # (num_warmup, num_samples) per chain
STD_RTOL = {"pyro": 0.25, "numpyro": 0.15}
RATIO_TOL = {"pyro": 0.15, "numpyro": 0.1}


def test_nuts_recovers_the_exact_posterior_and_checks_a_guide(backend, float64):
    lg = backend.models.LinearGaussian(4, 2, seed=0)
    x = backend.array(lg.get_weights()["b"] + np.random.default_rng(1).normal(size=(3, 4)))
    # The weights held fixed come from `params` (here those of another model), not start's.
    start = backend.models.LinearGaussian(4, 2, seed=5)
    before = start.get_weights()
    params = {
        k: backend.array(v) for k, v in lg.get_weights().items() if k in ("W", "b", "log_sigma")
    }
    warmup, samples = RUN[backend.name]
    inf = backend.inference
    idata = backend.call(
        inf.mcmc_latents,
        start.model,
        x,
        params=params,
        num_warmup=warmup,
        num_samples=samples,
        num_chains=2,
        seed=2,
    )
    z = idata.posterior["z"].values  # (chains, draws, batch, latent)
    assert z.shape == (2, samples, 3, 2)
    for k, v in start.get_weights().items():  # the model's own weights are left alone
        np.testing.assert_array_equal(v, before[k])
    mean, cov = (backend.numpy(a) for a in lg.exact_posterior(x))
    std = np.sqrt(np.diag(cov))

    lg.optimal_guide()  # the exact posterior: the comparison sees only MC error
    report = backend.call(inf.compare_with_guide, idata, lg.guide, x, num_samples=2000, seed=3)
    assert report["max_r_hat"] < 1.05 and report["min_ess_bulk"] > 100
    # The MC error of a posterior mean is std / sqrt(ESS): allow 4 of them (the guide's 2000
    # independent draws add less); a sample std has relative error ~ 1 / sqrt(2 ESS).
    mc_error = std.max() / np.sqrt(report["min_ess_bulk"])
    draws = z.reshape(-1, 3, 2)
    np.testing.assert_allclose(draws.mean(0), mean, atol=min(4 * mc_error, 0.5 * std.min()))
    np.testing.assert_allclose(
        draws.std(0), np.broadcast_to(std, (3, 2)), rtol=STD_RTOL[backend.name]
    )
    assert report["max_abs_mean_diff"] < min(5 * mc_error, 0.5 * std.min())
    assert abs(report["mean_std_ratio"] - 1) < RATIO_TOL[backend.name]
    # The guide's weights can come from `params` too: start's guide with lg's optimal ones.
    guide_params = {
        k: backend.array(v) for k, v in lg.get_weights().items() if k.startswith("guide_")
    }
    same = backend.call(
        inf.compare_with_guide, idata, start.guide, x, params=guide_params, num_samples=2000, seed=3
    )
    assert same["max_abs_mean_diff"] < 5 * mc_error
    # A guide at the prior is far off: the comparison must see it.
    prior = {"guide_A": np.zeros((2, 4)), "guide_c": np.zeros(2), "guide_log_s": np.zeros(2)}
    far = backend.models.LinearGaussian(4, 2, seed=0)
    far.set_weights({**far.get_weights(), **prior})
    bad = backend.call(inf.compare_with_guide, idata, far.guide, x, num_samples=2000, seed=3)
    assert bad["mean_std_ratio"] > 1.5 and bad["max_abs_mean_diff"] > 0.3


def test_bad_options_are_config_errors(backend):
    lg = backend.models.LinearGaussian(3, 1, seed=0)
    x = backend.array(lg.get_weights()["b"][None, :])
    inf = backend.inference
    for kwargs in (dict(num_samples=0), dict(num_warmup=-1), dict(num_chains=1.0)):
        with pytest.raises(ConfigError):
            backend.call(inf.mcmc_latents, lg.model, x, **kwargs)
    posterior = az.from_dict(posterior={"w": np.zeros((1, 5))})
    with pytest.raises(ConfigError, match="share no latent"):
        backend.call(inf.compare_with_guide, posterior, lg.guide, x)
    with pytest.raises(ConfigError, match="num_samples must be a positive integer"):
        backend.call(inf.compare_with_guide, posterior, lg.guide, x, num_samples=0)
