"""LinearGaussian (probabilistic PCA): the closed forms agree with each other and with Bayes."""

import numpy as np
import pytest
import torch
from pyro import poutine

from ppgen.errors import DataError
from ppgen.models.pyro import LinearGaussian


def normal_log_prob(x, mean, cov):
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("x_dim, latent", [(3, 1), (6, 2)])
def test_bayes_identity(float64, batch, x_dim, latent):
    """log p(x) = log p(z) + log p(x | z) - log p(z | x) for every z."""
    m = LinearGaussian(x_dim, latent, seed=1)
    x = torch.randn(batch, x_dim)
    z = torch.randn(batch, latent)
    mean, cov = m.exact_posterior(x)
    assert mean.shape == (batch, latent) and cov.shape == (latent, latent)
    sigma = m.log_sigma.exp()
    log_joint = normal_log_prob(z, torch.zeros(latent), torch.eye(latent)) + normal_log_prob(
        x, z @ m.W.T + m.b, sigma**2 * torch.eye(x_dim)
    )
    expected = log_joint - normal_log_prob(z, mean, cov)
    # float64 linear algebra on well-conditioned 6x6 matrices: ~1e-12 rounding.
    torch.testing.assert_close(m.exact_log_px(x), expected, rtol=0, atol=1e-9)


def test_optimal_guide_is_the_exact_posterior(float64):
    m = LinearGaussian(5, 2, seed=0)
    x = torch.randn(3, 5)
    mean, cov = m.exact_posterior(x)
    # W starts with orthogonal columns, so the posterior covariance is diagonal.
    torch.testing.assert_close(cov, torch.diag(torch.diagonal(cov)), rtol=0, atol=1e-12)
    m.optimal_guide()
    site = poutine.trace(m.guide).get_trace(x).nodes["z"]["fn"].base_dist
    torch.testing.assert_close(site.loc, mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(site.scale**2, torch.diagonal(cov).expand(3, 2), rtol=0, atol=1e-12)


def test_weights_round_trip():
    a, b = LinearGaussian(4, 2, seed=0), LinearGaussian(4, 2, seed=1)
    w = a.get_weights()
    shapes = {k: v.shape for k, v in w.items()}
    assert shapes == {
        "W": (4, 2),
        "b": (4,),
        "log_sigma": (),
        "guide_A": (2, 4),
        "guide_c": (2,),
        "guide_log_s": (2,),
    }
    b.set_weights(w)
    x = torch.randn(2, 4)
    assert torch.equal(a.exact_log_px(x), b.exact_log_px(x))
    assert LinearGaussian(4, 2, noise=0.5).get_weights()["log_sigma"] == pytest.approx(np.log(0.5))


def test_bad_input():
    m = LinearGaussian(4, 2)
    for x in (torch.zeros(2, 3), torch.full((2, 4), float("nan"))):
        with pytest.raises(DataError):
            m.model(x)
        with pytest.raises(DataError):
            m.exact_log_px(x)
