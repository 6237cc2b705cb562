"""log_weights and the log-likelihood estimators on both backends, against probabilistic
PCA's exact log p(x) (float64): zero-variance weights at the posterior, the textbook weights,
bounds that increase with K towards log p(x), site placement rules and argument checks."""

import math
import re

import numpy as np
import pytest

from ppgen.errors import ConfigError, DataError

X_DIM, LATENT = 5, 2


def ppca(backend, batch, seed=0):
    m = backend.models.LinearGaussian(X_DIM, LATENT, seed=seed)
    x = np.random.default_rng(seed + 1).normal(size=(batch, X_DIM)) * 1.5 + m.get_weights()["b"]
    return m, backend.array(x)


def perturbed(m):
    """A good but wrong guide: the posterior mean shifted and its std inflated by 30%."""
    w = m.optimal_guide().get_weights()
    w["guide_c"] = w["guide_c"] + 0.3 * np.exp(w["guide_log_s"])
    w["guide_log_s"] = w["guide_log_s"] + np.log(1.3)
    m.set_weights(w)
    return m


def logmeanexp(a, axis=0):
    top = a.max(axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.mean(np.exp(a - top), axis))


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("k", [1, 3, 7])
@pytest.mark.parametrize("num_data", [None, 20, 40])
def test_optimal_guide_gives_zero_variance_weights(backend, float64, batch, k, num_data):
    m, x = ppca(backend, batch)
    m.optimal_guide()
    log_w = backend.call(
        backend.inference.log_weights, m.model, m.guide, x, num_particles=k, num_data=num_data
    )
    assert log_w.shape == (k, batch)
    # w = p(x, z) / p(z | x) = p(x) for every z: equal up to float64 round-off, and per
    # datapoint whatever the per-dataset scale.
    exact = backend.numpy(m.exact_log_px(x))
    np.testing.assert_allclose(
        backend.numpy(log_w), np.broadcast_to(exact, (k, batch)), rtol=0, atol=1e-6
    )


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


@pytest.mark.parametrize("batch, k", [(1, 1), (3, 4), (4, 6)])
def test_conditioned_guide_gives_the_textbook_weights(backend, float64, batch, k):
    m, x = ppca(backend, batch)
    perturbed(m)
    z = np.random.default_rng(7).normal(size=(k, batch, LATENT))
    guide = backend.condition(m.guide, {"z": z})
    weights = backend.inference.log_weights

    def log_w(seed, num_data):
        out = backend.call(
            weights, m.model, guide, x, num_particles=k, num_data=num_data, seed=seed
        )
        return backend.numpy(out)

    # Deterministic (the draws are given) and per datapoint (num_data only scales a loss).
    np.testing.assert_array_equal(log_w(0, 7 * batch), log_w(9, batch))
    w, xn = m.get_weights(), backend.numpy(x)
    expected = (
        normal_logpdf(z, 0.0, 1.0).sum(-1)
        + normal_logpdf(xn, z @ w["W"].T + w["b"], np.exp(w["log_sigma"])).sum(-1)
        - normal_logpdf(z, xn @ w["guide_A"].T + w["guide_c"], np.exp(w["guide_log_s"])).sum(-1)
    )
    np.testing.assert_allclose(log_w(0, None), expected, rtol=0, atol=1e-10)


def test_log_marginal_likelihood_is_within_005_nats(backend, float64):
    m, x = ppca(backend, 6)
    perturbed(m)
    inf, exact = backend.inference, backend.numpy(m.exact_log_px(x))
    lml = backend.call(
        inf.log_marginal_likelihood, m.model, m.guide, x, num_samples=5000, chunk_size=700
    )
    assert lml.shape == (6,)
    # The bar: 5000 importance samples from a decent guide are within 0.05 nats
    # (the chunk does not divide K).
    np.testing.assert_allclose(backend.numpy(lml), exact, atol=0.05)
    ll = backend.call(
        inf.evaluate_log_likelihood,
        m.model,
        m.guide,
        backend.numpy(x),
        num_samples=5000,
        batch_size=4,
    )
    assert ll.shape == (6,) and ll.dtype == np.float64
    np.testing.assert_allclose(ll, exact, atol=0.05)


@pytest.mark.parametrize("batch", [3, 10])
def test_evaluate_log_likelihood_batches_in_order(backend, float64, batch):
    m, x = ppca(backend, batch)
    m.optimal_guide()  # exact for every K: isolates batching, padding and ordering
    out = backend.call(
        backend.inference.evaluate_log_likelihood,
        m.model,
        m.guide,
        backend.numpy(x),
        num_samples=30,
        batch_size=4,
        chunk_size=8,
    )
    assert out.shape == (batch,)
    np.testing.assert_allclose(out, backend.numpy(m.exact_log_px(x)), atol=1e-6)
    for bad in (np.full((2, X_DIM), np.nan), np.zeros((0, X_DIM)), np.zeros(X_DIM)):
        with pytest.raises(DataError):
            backend.call(backend.inference.evaluate_log_likelihood, m.model, m.guide, bad)
    with pytest.raises(DataError, match="NaN"):
        backend.call(
            backend.inference.evaluate_log_likelihood, m.model, m.guide, np.full((2, 5), np.nan)
        )


def _fixed(backend, fn, model, guide, **kwargs):
    """``fn`` with the program and options fixed, for ``backend.call(_, x)``: on NumPyro one
    jitted program, not dispatched op by op (the same function, computed as trainers do)."""
    if backend.name == "pyro":
        return lambda x: fn(model, guide, x, **kwargs)
    return backend.jit(lambda key, x: fn(key, model, guide, x, **kwargs))


def test_bounds_are_ordered_and_iwae_increases_with_k(backend, float64):
    m, x = ppca(backend, 3)
    perturbed(m)
    inf, exact = backend.inference, backend.numpy(m.exact_log_px(x))
    lw = backend.numpy(
        backend.call(_fixed(backend, inf.log_weights, m.model, m.guide, num_particles=20000), x)
    )
    bounds = []
    for k in (1, 5, 50):  # E[L_k] by averaging 20000 / k independent k-sample bounds
        groups = lw[: 20000 // k * k].reshape(-1, k, 3)
        bounds.append(logmeanexp(groups, axis=1).mean(0))
    elbo, iwae5, iwae50 = bounds
    # The gaps L_50 - L_5 and L_5 - L_1 are ~0.1 nats here, far above the ~0.005 MC error.
    assert np.all(elbo < iwae5) and np.all(iwae5 < iwae50) and np.all(iwae50 < exact)
    assert np.all(exact - iwae50 < exact - elbo)
    # The objectives compute the same bounds: replicate x to average over many draws.
    reps = 300
    xs = backend.array(np.tile(backend.numpy(x), (reps, 1)))
    elbo_loss, iwae_loss = (
        -float(backend.numpy(backend.call(_fixed(backend, objective, m.model, m.guide), xs))) / reps
        for objective in (inf.ELBO(num_particles=1), inf.IWAE(num_particles=50))
    )
    assert elbo_loss < iwae_loss <= exact.sum()
    # Two independent MC estimates of the same sum over 3 points: the ELBO's single-draw
    # terms are the noisier (sd of the 300-draw mean ~0.1 nats here), IWAE's less so.
    assert elbo_loss == pytest.approx(elbo.sum(), abs=1.5)
    assert iwae_loss == pytest.approx(iwae50.sum(), abs=0.3)


def test_model_without_plate_has_batch_one(backend, float64):
    ppl, dist = backend.ppl, backend.dist

    def model():
        z = ppl.sample("z", dist.Normal(0.0, 1.0))
        ppl.sample("y", dist.Normal(z, 1.0), obs=backend.array(0.5))

    def guide():
        ppl.sample("z", dist.Normal(0.25, math.sqrt(0.5)))  # the exact posterior

    log_w = backend.call(backend.inference.log_weights, model, guide, num_particles=4)
    exact = normal_logpdf(0.5, 0.0, math.sqrt(2.0))
    np.testing.assert_allclose(backend.numpy(log_w), np.full((4, 1), exact), rtol=0, atol=1e-12)
    with pytest.raises(ConfigError, match="does not sample"):
        backend.call(backend.inference.log_weights, model, lambda: None)


def test_latent_outside_the_data_plate_is_rejected(backend):
    ppl, dist = backend.ppl, backend.dist

    def model(x):
        mu = ppl.sample("mu", dist.Normal(0.0, 1.0))
        with ppl.plate("data", x.shape[0]):
            ppl.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        ppl.sample("mu", dist.Normal(0.0, 1.0))

    x = backend.array(np.zeros(3))
    with pytest.raises(ConfigError, match="'mu' lies outside the 'data' plate"):
        backend.call(backend.inference.log_weights, model, guide, x, num_particles=2)


@pytest.mark.parametrize("bad", [0, -1, 2.0, True])
def test_bad_counts_are_refused_with_one_message(backend, bad):
    m, x = ppca(backend, 2)
    inf = backend.inference
    calls = {
        "num_particles": lambda: backend.call(
            inf.log_weights, m.model, m.guide, x, num_particles=bad
        ),
        "num_samples": lambda: backend.call(
            inf.log_marginal_likelihood, m.model, m.guide, x, num_samples=bad
        ),
        "chunk_size": lambda: backend.call(
            inf.log_marginal_likelihood, m.model, m.guide, x, chunk_size=bad
        ),
        "batch_size": lambda: backend.call(
            inf.evaluate_log_likelihood, m.model, m.guide, backend.numpy(x), batch_size=bad
        ),
    }
    for name, call in calls.items():
        with pytest.raises(
            ConfigError, match=re.escape(f"{name} must be a positive integer, got {bad!r}")
        ):
            call()


def test_pyro_log_likelihood_takes_integer_data(float64):
    """Integer rows (counts as int64) are scored as the trainer trains on them: cast to the
    parameters' dtype, the same log p(x) as float rows, not a dtype error in a user's
    ``nn.Linear``."""
    import pyro
    import pyro.distributions as pdist
    import torch

    import ppgen.inference.pyro

    linear = torch.nn.Linear(3, 3)

    def model(x):
        with pyro.plate("data", len(x)):
            pyro.module("linear", linear)
            pyro.sample("x", pdist.Normal(linear(x), 1.0).to_event(1), obs=x)

    def guide(x):
        pass

    x = np.random.default_rng(0).integers(0, 5, (6, 3))
    as_float = ppgen.inference.pyro.evaluate_log_likelihood(
        model, guide, x.astype(np.float64), num_samples=1
    )
    as_int = ppgen.inference.pyro.evaluate_log_likelihood(model, guide, x, num_samples=1)
    np.testing.assert_allclose(as_int, as_float, rtol=1e-12)
