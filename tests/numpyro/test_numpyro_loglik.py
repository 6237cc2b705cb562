"""Importance weights and bounds against probabilistic PCA's exact log p(x) (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax.scipy.special import logsumexp
from numpyro import handlers

from ppgen.errors import ConfigError, DataError
from ppgen.inference.numpyro import (
    ELBO,
    IWAE,
    evaluate_log_likelihood,
    log_marginal_likelihood,
    log_weights,
)
from ppgen.models.numpyro import LinearGaussian

KEY = jax.random.PRNGKey(0)


def _pca(batch, x_dim=5, latent=2, seed=0):
    lg = LinearGaussian(x_dim, latent, seed=seed)
    x = lg.b + jax.random.normal(jax.random.PRNGKey(seed + 1), (batch, x_dim)) * 1.5
    return lg, x


def _perturbed(lg):
    """A good but wrong guide: the posterior mean shifted and its std inflated by 30%."""
    lg.optimal_guide()
    lg.guide_c = lg.guide_c + 0.3 * jnp.exp(lg.guide_log_s)
    lg.guide_log_s = lg.guide_log_s + jnp.log(1.3)
    return lg


@pytest.mark.parametrize("batch", [1, 4])
def test_optimal_guide_gives_zero_variance_weights(float64, batch):
    lg, x = _pca(batch)
    lg.optimal_guide()

    @jax.jit
    def weights(x):  # per datapoint: the same with and without the per-dataset scale
        return [
            log_weights(KEY, lg.model, lg.guide, x, num_particles=7, num_data=num_data)
            for num_data in (None, 40)
        ]

    for lw in weights(x):
        assert lw.shape == (7, batch)
        # q = p(z | x) makes every weight p(x): equal up to float64 round-off.
        np.testing.assert_allclose(lw, jnp.broadcast_to(lg.exact_log_px(x), (7, batch)), atol=1e-6)


def test_log_marginal_likelihood_converges_to_exact(float64):
    lg, x = _pca(6)
    _perturbed(lg)
    est = log_marginal_likelihood(KEY, lg.model, lg.guide, x, num_samples=5000, chunk_size=700)
    assert est.shape == (6,)
    # The bar of the issue: 0.05 nats per datapoint at K = 5000 (the chunk does not divide K).
    np.testing.assert_allclose(est, lg.exact_log_px(x), atol=0.05)


def test_bounds_are_ordered_and_iwae_increases_with_k(float64):
    lg, x = _pca(3)
    _perturbed(lg)
    exact = np.asarray(lg.exact_log_px(x))
    lw = jax.jit(lambda x: log_weights(KEY, lg.model, lg.guide, x, num_particles=20000))(x)
    lw = np.asarray(lw)
    bounds = []
    for k in (1, 5, 50):  # E[L_k] by averaging 20000 / k independent k-sample bounds
        groups = lw[: 20000 // k * k].reshape(-1, k, 3)
        bounds.append((logsumexp(groups, axis=1) - np.log(k)).mean(0))
    elbo, iwae5, iwae50 = bounds
    # The gaps L_50 - L_5 and L_5 - L_1 are ~0.1 nats here, far above the ~0.005 MC error.
    assert np.all(elbo < iwae5) and np.all(iwae5 < iwae50) and np.all(iwae50 < exact)
    assert np.all(exact - iwae50 < exact - elbo)


def test_objectives_equal_their_formulas_on_given_latents(float64):
    lg, x = _pca(4)
    _perturbed(lg)
    z = jax.random.normal(KEY, (6, 4, 2))
    guide = handlers.condition(lg.guide, data={"z": z})

    @jax.jit
    def values(x):
        return (
            log_weights(KEY, lg.model, guide, x, num_particles=6, num_data=20),
            log_weights(jax.random.PRNGKey(9), lg.model, guide, x, num_particles=6),
            ELBO(num_particles=6)(KEY, lg.model, guide, x, num_data=20),
            IWAE(num_particles=6)(KEY, lg.model, guide, x, num_data=20),
        )

    lw, again, elbo, iwae = values(x)
    np.testing.assert_array_equal(lw, again)  # deterministic, and per datapoint
    scale = 20 / 4  # losses are per dataset
    np.testing.assert_allclose(-elbo, scale * lw.mean(0).sum(), rtol=1e-12)
    expected = scale * (logsumexp(lw, axis=0) - np.log(6)).sum()
    np.testing.assert_allclose(-iwae, expected, rtol=1e-12)


@pytest.mark.parametrize("batch", [3, 10])
def test_evaluate_log_likelihood_pads_the_last_batch(float64, batch):
    lg, x = _pca(batch)
    lg.optimal_guide()  # exact for every K: isolates batching, padding and ordering
    out = evaluate_log_likelihood(
        KEY, lg.model, lg.guide, np.asarray(x), num_samples=30, batch_size=4, chunk_size=8
    )
    assert out.shape == (batch,)
    np.testing.assert_allclose(out, lg.exact_log_px(x), atol=1e-6)
    with pytest.raises(DataError, match="NaN"):
        evaluate_log_likelihood(KEY, lg.model, lg.guide, np.full((2, 5), np.nan))


def _global_latent_model(x):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def _global_latent_guide(x):
    numpyro.sample("mu", dist.Normal(0.0, 1.0))


def _no_plate_model(x):
    z = numpyro.sample("z", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    numpyro.sample("x", dist.Normal(z.sum(-1, keepdims=True), 1.0).to_event(1), obs=x)


def _no_plate_guide(x):
    numpyro.sample("z", dist.Normal(jnp.full(2, 0.1), 0.9).to_event(1))


def test_site_placement_rules():
    x = jnp.ones(4)
    with pytest.raises(ConfigError, match="outside the 'data' plate"):
        log_weights(KEY, _global_latent_model, _global_latent_guide, x, num_particles=2)
    # No data plate at all: one datapoint; a latent missing from the guide is an error.
    lw = jax.jit(lambda x: log_weights(KEY, _no_plate_model, _no_plate_guide, x, num_particles=3))(
        jnp.ones(1)
    )
    assert lw.shape == (3, 1) and bool(jnp.all(jnp.isfinite(lw)))
    with pytest.raises(ConfigError, match="does not sample"):
        log_weights(KEY, _no_plate_model, lambda x: None, jnp.ones(1))
    with pytest.raises(ConfigError, match="positive"):
        log_weights(KEY, _no_plate_model, _no_plate_guide, jnp.ones(1), num_particles=0)
