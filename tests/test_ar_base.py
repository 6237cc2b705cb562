"""The autoregressive base (``ppgen.models.{pyro,numpyro}.ar``): heads, the distribution,
the model-guide pair and the generic sampler, on both backends, with the toy network of
``tests/ar_checks.py`` (FVSBN with several outputs per dimension)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro.infer.util import log_density
from pyro import poutine
from scipy.special import expit, logsumexp

import ppgen.inference.numpyro as ni
import ppgen.inference.pyro as pi
from ppgen.errors import ConfigError, DataError
from tests.ar_checks import (
    all_binary,
    assert_autoregressive,
    dependencies,
    heads,
    log_prob_of,
    plated_log_prob,
    plated_sites,
    sample_with,
    toy_net,
)

BACKENDS = ("pyro", "numpyro")


def head_log_prob(name, head, params, x):
    if name == "pyro":
        with torch.no_grad():
            return head.log_prob(torch.as_tensor(params), torch.as_tensor(x)).numpy()
    return np.asarray(head.log_prob(jnp.asarray(params), jnp.asarray(x)))


def head_draw(name, head, params, noise):
    if name == "pyro":
        return head.draw(torch.as_tensor(params), torch.as_tensor(noise)).numpy()
    return np.asarray(head.draw(jnp.asarray(params), jnp.asarray(noise)))


def make_head(name, kind):
    m = heads(name)
    return {
        "bernoulli": lambda: m.Bernoulli(),
        "categorical": lambda: m.Categorical(5),
        "mixture": lambda: m.DiscretizedLogisticMixture(3, levels=256),
    }[kind]()


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["bernoulli", "categorical", "mixture"])
def test_every_head_is_normalised(float64, name, kind):
    """Each head's probabilities over its whole support sum to one (1e-9), for random
    parameters including extreme ones."""
    head = make_head(name, kind)
    rng = np.random.default_rng(0)
    params = rng.normal(0, 3, (7, head.num_params))
    if kind == "mixture":
        params[:, 6:] = rng.uniform(-9, 2, (7, 3))  # log-scales from below the floor to wide
        params[0, 3:6] = [-1.5, 0.999, 2.0]  # means past the edges
    support = {"bernoulli": 2, "categorical": 5, "mixture": 256}[kind]
    values = np.arange(support, dtype=np.float64 if kind == "bernoulli" else np.int64)
    grid = np.broadcast_to(params[:, None, :], (7, support, head.num_params))
    lp = head_log_prob(name, head, np.ascontiguousarray(grid), np.tile(values, (7, 1)))
    np.testing.assert_allclose(logsumexp(lp, axis=-1), 0.0, atol=1e-9)


@pytest.mark.parametrize("kind", ["bernoulli", "categorical", "mixture"])
def test_heads_agree_across_backends(float64, kind):
    """The same parameters give the same log-probabilities, and the same noise the same
    draws, on both backends."""
    rng = np.random.default_rng(1)
    hp, hn = make_head("pyro", kind), make_head("numpyro", kind)
    params = rng.normal(0, 2, (50, hp.num_params))
    noise = rng.uniform(1e-12, 1, (50, *hp.noise_shape))
    draws = head_draw("pyro", hp, params, noise)
    np.testing.assert_array_equal(draws, head_draw("numpyro", hn, params, noise))
    np.testing.assert_allclose(
        head_log_prob("pyro", hp, params, draws),
        head_log_prob("numpyro", hn, params, draws),
        rtol=1e-10,
    )


def test_discretized_mixture_matches_its_definition(float64):
    """One logistic component: P(k) = sigma((x_k + h - mu)/s) - sigma((x_k - h - mu)/s)
    inside, the tails at the two edge codes (PixelCNN++ eq. 2)."""
    mu, log_s, levels = 0.1, -2.0, 256
    s, h = np.exp(log_s), 1.0 / (levels - 1)
    x = 2 * h * np.arange(levels) - 1
    cdf_hi, cdf_lo = expit((x + h - mu) / s), expit((x - h - mu) / s)
    want = cdf_hi - cdf_lo
    want[0], want[-1] = cdf_hi[0], 1 - cdf_lo[-1]
    for name in BACKENDS:
        head = heads(name).DiscretizedLogisticMixture(1, levels)
        params = np.tile([0.0, mu, log_s], (levels, 1))
        got = np.exp(head_log_prob(name, head, params, np.arange(levels)))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["bernoulli", "categorical", "mixture"])
def test_draws_follow_the_head(float64, name, kind):
    """Draws from uniform noise have the head's distribution: the empirical frequencies of
    20,000 draws are within 0.02 (total variation) of the probabilities."""
    head = make_head(name, kind)
    rng = np.random.default_rng(2)
    params = rng.normal(0, 1, head.num_params)
    if kind == "mixture":
        params[6:] = -2.0
    n = 20_000
    noise = rng.uniform(1e-12, 1, (n, *head.noise_shape))
    draws = head_draw(name, head, np.tile(params, (n, 1)), noise).astype(int)
    support = {"bernoulli": 2, "categorical": 5, "mixture": 256}[kind]
    values = np.arange(support)
    probs = np.exp(
        head_log_prob(
            name,
            head,
            np.tile(params, (support, 1)),
            values.astype(float) if kind == "bernoulli" else values,
        )
    )
    freq = np.bincount(draws, minlength=support) / n
    assert 0.5 * np.abs(freq - probs).sum() < 0.02


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("reverse", [False, True])
def test_toy_network_is_autoregressive(float64, name, reverse):
    """The checker itself: the toy network passes in its own order and fails in the other."""
    net = toy_net(name, 5, num_params=2, reverse=reverse)
    dep = dependencies(net, np.random.default_rng(0).normal(size=5))
    assert_autoregressive(dep, net.order)
    with pytest.raises(AssertionError, match="depends on input"):
        assert_autoregressive(dep, net.order[::-1])


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("context", [False, True])
def test_probabilities_of_all_binary_vectors_sum_to_one(float64, name, context):
    """sum over x in {0,1}^D of p(x) = 1 (D = 4), unconditional and given a context."""
    net = toy_net(name, 4, context_dim=3 if context else 0, reverse=True)
    head = heads(name).Bernoulli()
    x = all_binary(4)
    ctx = np.tile(np.random.default_rng(0).normal(size=3), (len(x), 1)) if context else None
    lp = log_prob_of(net, head, x, ctx)
    np.testing.assert_allclose(logsumexp(lp), 0.0, atol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("kind", ["bernoulli", "categorical"])
def test_plated_form_equals_the_efficient_form(float64, name, kind):
    """The generic plated form (one site per dimension) gives the efficient form's
    log-likelihood (1e-10), with sites named x_0 .. x_{D-1} in the network's order."""
    head = make_head(name, kind)
    net = toy_net(name, 4, num_params=head.num_params, reverse=True, scale=0.3)
    rng = np.random.default_rng(3)
    x = all_binary(4) if kind == "bernoulli" else rng.integers(0, 5, (6, 4))
    lp = log_prob_of(net, head, x)
    np.testing.assert_allclose(plated_log_prob(net, head, x), lp.sum(), rtol=1e-10)
    assert plated_sites(net, head, x) == [f"x_{i}" for i in net.order]


@pytest.mark.parametrize("kind", ["bernoulli", "categorical", "mixture"])
def test_backends_agree_on_log_prob_and_samples(float64, kind):
    """The same weights give the same log p(x) (1e-10) and, for the same noise, the same
    samples from the naive sampler."""
    hp, hn = make_head("pyro", kind), make_head("numpyro", kind)
    p = toy_net("pyro", 4, num_params=hp.num_params, scale=0.01, seed=4)
    n = toy_net("numpyro", 4, num_params=hn.num_params, scale=0.01, seed=4)
    rng = np.random.default_rng(4)
    noise = rng.uniform(1e-12, 1, (20, 4, *hp.noise_shape))
    xs = sample_with(p, hp, noise, cached=False)
    np.testing.assert_array_equal(xs, sample_with(n, hn, noise, cached=False))
    np.testing.assert_allclose(log_prob_of(p, hp, xs), log_prob_of(n, hn, xs), rtol=1e-10)


@pytest.mark.parametrize("name", BACKENDS)
def test_samples_have_the_model_distribution(float64, name):
    """20,000 draws of AutoregressiveDensity.sample (D = 3, reversed order) have the
    frequencies exp(log_prob) of the 8 states, within 0.02 total variation."""
    net = toy_net(name, 3, reverse=True, seed=5)
    m = heads(name)
    density = m.AutoregressiveDensity(net, m.Bernoulli())
    if name == "pyro":
        torch.manual_seed(0)
        xs = density.sample(20_000).numpy()
        lp = density.log_prob(torch.as_tensor(all_binary(3))).detach().numpy()
    else:
        xs = np.asarray(density.sample(jax.random.PRNGKey(0), 20_000))
        lp = np.asarray(density.log_prob(jnp.asarray(all_binary(3))))
    codes = (xs @ np.array([4, 2, 1])).astype(int)
    freq = np.bincount(codes, minlength=8) / len(xs)
    assert 0.5 * np.abs(freq - np.exp(lp)).sum() < 0.02


@pytest.mark.parametrize("name", BACKENDS)
def test_ppgen_estimators_are_exact_with_the_empty_guide(float64, name):
    """ppgen's trainer bound, IWAE and log-likelihood estimator on the density's empty
    guide give exactly log p(x)."""
    m, inference = heads(name), (pi if name == "pyro" else ni)
    density = m.AutoregressiveDensity(toy_net(name, 4, reverse=True), m.Bernoulli())
    x = all_binary(4)
    lp = log_prob_of(density.net, density.head, x)
    for objective in (inference.ELBO(), inference.IWAE(3)):
        trainer = inference.Trainer(density.model, density.guide, objective, batch_size=8)
        got = trainer.evaluate(trainer.init(0, x), x)["elbo"]
        np.testing.assert_allclose(got, lp.mean(), rtol=1e-9)
    args = () if name == "pyro" else (jax.random.PRNGKey(0),)
    ll = inference.evaluate_log_likelihood(
        *args, density.model, density.guide, x, num_samples=2, batch_size=5
    )
    np.testing.assert_allclose(ll, lp, rtol=1e-9)


@pytest.mark.parametrize("name", BACKENDS)
def test_training_lowers_the_nll(name):
    """A few epochs of the ordinary trainer fit the toy model to data from another one."""
    m, inference = heads(name), (pi if name == "pyro" else ni)
    rng = np.random.default_rng(6)
    x = (rng.random((400, 4)) < [0.9, 0.2, 0.7, 0.1]).astype(np.float32)
    density = m.AutoregressiveDensity(toy_net(name, 4, scale=0.0, seed=6), m.Bernoulli())
    if name == "pyro":
        density.net.float()
    else:
        density.net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), density.net)
    trainer = inference.Trainer(density.model, density.guide, inference.ELBO(), lr=0.05,
                                batch_size=50)  # fmt: skip
    state = trainer.init(0, x)
    before = trainer.evaluate(state, x)["elbo"]
    for epoch in range(5):
        state, _ = trainer.train_epoch(state, x, epoch)
    after = trainer.evaluate(state, x)["elbo"]
    assert after > before + 0.3


@pytest.mark.parametrize("name", BACKENDS)
def test_bad_input_is_refused_in_one_line(name):
    m = heads(name)
    net = toy_net(name, 4)
    with pytest.raises(ConfigError, match="takes 5 parameters per dimension"):
        m.AutoregressiveDensity(net, m.Categorical(5))
    with pytest.raises(ConfigError, match="num_classes >= 2"):
        m.Categorical(1)
    density = m.AutoregressiveDensity(net, m.Bernoulli())
    as_x = torch.as_tensor if name == "pyro" else jnp.asarray
    for bad, match in (
        (np.full((2, 4), 0.5), "needs binary x"),
        (np.zeros((2, 5)), r"needs \(batch, 4\)"),
        (np.array([[0, 1, np.nan, 0]]), "NaN"),
    ):
        with pytest.raises(DataError, match=match):
            density.log_prob(as_x(bad))
    cat = m.AutoregressiveDensity(toy_net(name, 4, num_params=5), m.Categorical(5))
    with pytest.raises(DataError, match=r"integer codes in \[0, 5\)"):
        cat.log_prob(as_x(np.array([[0, 1, 7, 2]])))


@pytest.mark.parametrize("name", BACKENDS)
def test_value_check_runs_once_per_call_and_follows_validation(name, monkeypatch):
    """The head's support check runs once per model call or ``log_prob`` (the density's own
    check; the distribution it builds does not repeat it) while the backend's validation is
    on, never with it off, as ``check_x`` does; Pyro's trainer checks each epoch's first
    step only (it turns validation off after it), NumPyro's jitted epoch never (traced)."""
    m, inference = heads(name), (pi if name == "pyro" else ni)
    calls = []
    check = m.Bernoulli.check_values
    monkeypatch.setattr(m.Bernoulli, "check_values", lambda self, x: calls.append(check(self, x)))
    density = m.AutoregressiveDensity(toy_net(name, 4, seed=7), m.Bernoulli())
    x = all_binary(4).astype(np.float32)
    grey = np.full((2, 4), 0.5, np.float32)
    if name == "pyro":
        density.net.float()
        as_x, off = torch.as_tensor, pyro.validation_enabled(False)

        def model_log_prob(v):
            return poutine.trace(density.model).get_trace(as_x(v)).log_prob_sum().item()
    else:
        density.net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), density.net)
        as_x, off = jnp.asarray, numpyro.validation_enabled(False)

        def model_log_prob(v):
            return float(log_density(density.model, (as_x(v),), {}, {})[0])

    lp = log_prob_of(density.net, density.head, x).sum()
    calls.clear()
    np.testing.assert_allclose(model_log_prob(x), lp, rtol=1e-5)
    assert len(calls) == 1
    density.log_prob(as_x(x))
    assert len(calls) == 2
    with pytest.raises(DataError, match="needs binary x"):
        model_log_prob(grey)
    with off:  # validation off: no pass over the values (grey ones are not refused)
        calls.clear()
        model_log_prob(x)
        density.log_prob(as_x(grey))
        assert calls == []
    trainer = inference.Trainer(density.model, density.guide, inference.ELBO(), batch_size=4)
    state = trainer.init(0, x)
    calls.clear()
    state, _ = trainer.train_epoch(state, x, 0)  # 4 steps
    assert len(calls) == (1 if name == "pyro" else 0)
