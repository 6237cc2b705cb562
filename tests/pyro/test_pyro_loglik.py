"""log_weights and the log-likelihood estimators against probabilistic PCA's exact log p(x)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from ppgen.errors import ConfigError
from ppgen.inference.pyro import (
    ELBO,
    IWAE,
    evaluate_log_likelihood,
    log_marginal_likelihood,
    log_weights,
)
from ppgen.models.pyro import LinearGaussian

X_DIM, LATENT = 5, 2


@pytest.fixture
def rng():
    pyro.set_rng_seed(0)


def ppca(batch, seed=0):
    m = LinearGaussian(X_DIM, LATENT, seed=seed)
    x = torch.randn(batch, X_DIM, generator=torch.Generator().manual_seed(seed + 1))
    return m, x


def near_optimal(m):
    """The exact posterior mean shifted by 0.1 and its scales inflated by 30 %."""
    m.optimal_guide()
    with torch.no_grad():
        m.guide_c += 0.1
        m.guide_log_s += math.log(1.3)
    return m


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("num_data", [None, 20])
def test_optimal_guide_gives_zero_variance_weights(float64, rng, batch, k, num_data):
    m, x = ppca(batch)
    m.optimal_guide()
    log_w = log_weights(m.model, m.guide, x, num_particles=k, num_data=num_data)
    assert log_w.shape == (k, batch)
    # w = p(x, z) / p(z | x) = p(x) for every z; float64 rounding only.
    exact = m.exact_log_px(x).detach()
    torch.testing.assert_close(log_w.detach(), exact.expand(k, batch), rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch, k", [(1, 1), (3, 4)])
def test_conditioned_guide_gives_the_textbook_weights(float64, batch, k):
    m, x = ppca(batch)
    z = torch.randn(k, batch, LATENT)
    guide = poutine.condition(m.guide, data={"z": z})
    log_w = log_weights(m.model, guide, x, num_particles=k, num_data=7 * batch)
    assert torch.equal(log_w, log_weights(m.model, guide, x, num_particles=k, num_data=batch))
    with torch.no_grad():
        log_p = (
            dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
            + dist.Normal(z @ m.W.T + m.b, m.log_sigma.exp()).log_prob(x).sum(-1)
            - dist.Normal(x @ m.guide_A.T + m.guide_c, m.guide_log_s.exp()).log_prob(z).sum(-1)
        )
    torch.testing.assert_close(log_w.detach(), log_p, rtol=0, atol=1e-10)


def test_log_marginal_likelihood_is_within_005_nats(float64, rng):
    m, x = ppca(6)
    near_optimal(m)
    lml = log_marginal_likelihood(m.model, m.guide, x, num_samples=5000, chunk_size=700)
    assert lml.shape == (6,)
    # The bar: 5000 importance samples from a decent guide are within 0.05 nats.
    assert (lml - m.exact_log_px(x)).abs().max() < 0.05
    ll = evaluate_log_likelihood(m.model, m.guide, x.numpy(), num_samples=5000, batch_size=4)
    assert ll.shape == (6,) and ll.dtype == np.float64
    assert np.abs(ll - m.exact_log_px(x).detach().numpy()).max() < 0.05


def expected_bound(m, x, k, reps=400):
    """E[log (1/k) sum_k w_k] per datapoint, estimated from ``reps`` independent draws."""
    log_w = log_weights(m.model, m.guide, x, num_particles=k * reps).detach()
    log_w = log_w.reshape(reps, k, len(x))
    return (torch.logsumexp(log_w, 1) - math.log(k)).mean(0)


def test_iwae_bound_increases_with_k_towards_log_px(float64, rng):
    m, x = ppca(3)  # the guide as initialised: far from the posterior, so the gaps are wide
    exact = m.exact_log_px(x).detach()
    bounds = [expected_bound(m, x, k) for k in (1, 5, 50)]
    for lower, higher in zip(bounds[:-1], bounds[1:], strict=True):
        assert (lower < higher).all()
    assert (bounds[-1] <= exact).all()
    # The objectives compute the same bounds: replicate x to average over many draws.
    reps = 300
    xs = x.repeat(reps, 1)
    elbo = -ELBO(num_particles=1)(m.model, m.guide, xs).item() / reps
    iwae = -IWAE(num_particles=50)(m.model, m.guide, xs).item() / reps
    assert elbo < iwae <= exact.sum().item()
    # Two independent MC estimates of the same sum over 3 points; the ELBO's single-draw
    # terms are noisy with this poor guide (sd of the 300-draw mean ~0.3 nats), IWAE's not.
    assert elbo == pytest.approx(bounds[0].sum().item(), abs=1.5)
    assert iwae == pytest.approx(bounds[-1].sum().item(), abs=0.3)


def test_model_without_plate_has_batch_one(float64, rng):
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(z, 1.0), obs=torch.tensor(0.5))

    def guide():
        pyro.sample("z", dist.Normal(0.25, math.sqrt(0.5)))  # the exact posterior

    log_w = log_weights(model, guide, num_particles=4)
    exact = dist.Normal(0.0, math.sqrt(2.0)).log_prob(torch.tensor(0.5))
    torch.testing.assert_close(log_w, exact.expand(4, 1), rtol=0, atol=1e-12)


def test_latent_outside_the_data_plate_is_rejected():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ConfigError, match="mu"):
        log_weights(model, guide, torch.zeros(3), num_particles=2)
    with pytest.raises(ConfigError):
        log_weights(model, guide, torch.zeros(3), num_particles=0)
