"""LinearGaussian (probabilistic PCA) on both backends: its closed forms agree with Bayes'
rule and with conditioning the joint Gaussian in numpy; the optimal guide is the posterior."""

import numpy as np
import pytest

from ppgen.errors import DataError


def mvn_logpdf(x, mean, cov):
    """``log N(x; mean, cov)`` over the last axis, in numpy."""
    d = x - mean
    _, logdet = np.linalg.slogdet(2 * np.pi * cov)
    return -0.5 * (logdet + np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d))


@pytest.mark.parametrize("x_dim, latent, batch", [(3, 1, 1), (6, 2, 4), (5, 5, 2), (3, 1, 4)])
def test_closed_forms_agree_with_bayes_and_with_numpy(backend, float64, x_dim, latent, batch):
    m = backend.models.LinearGaussian(x_dim, latent, seed=3)
    rng = np.random.default_rng(0)
    x, z = rng.normal(size=(batch, x_dim)), rng.normal(size=(batch, latent))
    mean, cov = (backend.numpy(a) for a in m.exact_posterior(backend.array(x)))
    log_px = backend.numpy(m.exact_log_px(backend.array(x)))
    assert mean.shape == (batch, latent) and cov.shape == (latent, latent)
    assert log_px.shape == (batch,)
    w = m.get_weights()
    W, b, var = w["W"], w["b"], float(np.exp(2 * w["log_sigma"]))
    # Bayes: log p(x) = log p(z) + log p(x | z) - log p(z | x) for every z.
    log_joint = mvn_logpdf(z, np.zeros(latent), np.eye(latent)) + mvn_logpdf(
        x, z @ W.T + b, var * np.eye(x_dim)
    )
    np.testing.assert_allclose(log_px, log_joint - mvn_logpdf(z, mean, cov), rtol=0, atol=1e-9)
    # Independently: condition the joint Gaussian of (z, x).
    s_xx = W @ W.T + var * np.eye(x_dim)
    gain = W.T @ np.linalg.inv(s_xx)  # Cov(z, x) Cov(x)^-1
    np.testing.assert_allclose(mean, (x - b) @ gain.T, atol=1e-10)
    np.testing.assert_allclose(cov, np.eye(latent) - gain @ W, atol=1e-10)
    np.testing.assert_allclose(log_px, mvn_logpdf(x, b, s_xx), atol=1e-10)


def test_optimal_guide_is_the_exact_posterior(backend, float64):
    m = backend.models.LinearGaussian(5, 2, seed=0)
    x = np.random.default_rng(1).normal(size=(3, 5))
    mean, cov = (backend.numpy(a) for a in m.exact_posterior(backend.array(x)))
    # W starts with orthogonal columns, so the posterior covariance is diagonal.
    np.testing.assert_allclose(cov, np.diag(np.diagonal(cov)), rtol=0, atol=1e-12)
    assert m.optimal_guide() is m
    w = m.get_weights()
    np.testing.assert_allclose(x @ w["guide_A"].T + w["guide_c"], mean, atol=1e-10)
    np.testing.assert_allclose(np.exp(2 * w["guide_log_s"]), np.diagonal(cov), atol=1e-10)
    site = backend.trace(m.guide, backend.array(x))["z"]["fn"].base_dist
    np.testing.assert_allclose(backend.numpy(site.loc), mean, rtol=0, atol=1e-12)
    scale = np.broadcast_to(backend.numpy(site.scale), (3, 2))
    np.testing.assert_allclose(scale**2, np.broadcast_to(np.diagonal(cov), (3, 2)), atol=1e-12)


def test_weights_round_trip(backend):
    a, b = (backend.models.LinearGaussian(4, 2, seed=s) for s in (0, 1))
    shapes = {k: v.shape for k, v in a.get_weights().items()}
    assert shapes == {
        "W": (4, 2),
        "b": (4,),
        "log_sigma": (),
        "guide_A": (2, 4),
        "guide_c": (2,),
        "guide_log_s": (2,),
    }
    assert a.get_weights()["log_sigma"] == pytest.approx(np.log(0.5))  # the default noise
    weights = a.optimal_guide().get_weights()
    b.set_weights(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(b.get_weights()[k], v)
    x = backend.array(np.random.default_rng(2).normal(size=(2, 4)))
    np.testing.assert_array_equal(
        backend.numpy(a.exact_log_px(x)), backend.numpy(b.exact_log_px(x))
    )
    bound = backend.models.LinearGaussian(4, 2, seed=1).bind(weights)
    np.testing.assert_array_equal(bound.get_weights()["guide_A"], weights["guide_A"])


def test_bad_input(backend):
    m = backend.models.LinearGaussian(4, 2)
    for x in (np.zeros((2, 3)), np.full((2, 4), np.nan)):
        with pytest.raises(DataError):
            backend.trace(m.model, backend.array(x))
        with pytest.raises(DataError):
            m.exact_log_px(backend.array(x))
