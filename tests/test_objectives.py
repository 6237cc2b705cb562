"""ELBO and IWAE on both backends: what they compute from the log weights, beta, analytic KL
(where valid, exact, same mean and less variance), gradients to every parameter, options."""

import math
import re

import numpy as np
import pytest

from ppgen.errors import ConfigError

X_DIM = 10
KINDS = {
    "vae": ("VAE", dict(latent=3, hidden=(8,))),
    "vae-gaussian": ("VAE", dict(latent=3, hidden=(8,), likelihood="gaussian")),
    "hvae": ("HierarchicalVAE", dict(latents=(4, 2), hidden=((8,), (5,)))),
    "ppca": ("LinearGaussian", dict(latent=2)),
}
LATENTS = {"vae": {"z": 3}, "vae-gaussian": {"z": 3}, "hvae": {"z1": 4, "z2": 2}, "ppca": {"z": 2}}


def make(backend, kind):
    name, kwargs = KINDS[kind]
    return getattr(backend.models, name)(X_DIM, seed=1, **kwargs)


def data(backend, kind, n):
    rng = np.random.default_rng(3)
    if kind in ("vae-gaussian", "ppca"):
        return backend.array(rng.normal(size=(n, X_DIM)))
    return backend.array((rng.random((n, X_DIM)) < 0.3).astype(np.float64))


def latents(kind, k, batch, seed=0):
    rng = np.random.default_rng(seed)
    return {s: rng.normal(size=(k, batch, d)) for s, d in LATENTS[kind].items()}


def logmeanexp(a, axis=0):
    top = a.max(axis)
    return top + np.log(np.mean(np.exp(a - top), axis))


@pytest.mark.parametrize("kind", ["vae", "hvae", "ppca"])
@pytest.mark.parametrize("batch, k", [(1, 1), (4, 3), (4, 6)])
def test_bounds_are_the_scaled_mean_and_logmeanexp_of_log_weights(backend, float64, kind, batch, k):
    m, x = make(backend, kind), data(backend, kind, batch)
    guide, num_data = backend.condition(m.guide, latents(kind, k, batch)), 5 * batch
    inf = backend.inference
    log_w = backend.numpy(
        backend.call(inf.log_weights, m.model, guide, x, num_particles=k, num_data=num_data)
    )
    scale = num_data / batch  # losses are per dataset
    elbo = backend.loss(inf.ELBO(num_particles=k), m.model, guide, x, num_data=num_data)
    iwae = backend.loss(inf.IWAE(num_particles=k), m.model, guide, x, num_data=num_data)
    # Same terms summed in another order: float64 rounding only.
    assert elbo == pytest.approx(-scale * log_w.mean(0).sum(), rel=1e-12)
    assert iwae == pytest.approx(-scale * logmeanexp(log_w).sum(), rel=1e-12)


def _log_lik(backend, m, x, z):
    """``sum_i mean_k log p(x_i | z_k)``, the model run on the given latents."""
    site = backend.trace(backend.condition(m.model, z), x)["x"]
    return backend.numpy(site["fn"].log_prob(site["value"])).mean(0).sum()


@pytest.mark.parametrize("kind", ["vae", "hvae"])
@pytest.mark.parametrize("k", [1, 5])
def test_beta_weights_exactly_the_latent_terms(backend, float64, kind, k):
    m, x = make(backend, kind), data(backend, kind, 4)
    z = latents(kind, k, 4)
    guide = backend.condition(m.guide, z)
    inf = backend.inference
    # With z fixed, -loss(beta) = log p(x|z) + beta (log p(z) - log q(z|x)), linear in beta;
    # the likelihood term is computed independently, from the model conditioned on z.
    log_lik = _log_lik(backend, m, x, z)
    log_w = backend.numpy(backend.call(inf.log_weights, m.model, guide, x, num_particles=k))
    latent = log_w.mean(0).sum() - log_lik  # E[log p(z) - log q(z | x)]
    loss = {
        b: backend.loss(inf.ELBO(k, beta=b), m.model, guide, x, num_data=8) for b in (0, 0.3, 1)
    }
    for beta, value in loss.items():  # num_data / batch = 2
        assert -value == pytest.approx(2 * (log_lik + beta * latent), rel=1e-10)
    assert loss[0.3] == pytest.approx(0.7 * loss[0] + 0.3 * loss[1], rel=1e-12)
    # A per-call beta (the trainer's annealing schedule) overrides the default.
    per_call = backend.loss(inf.ELBO(k, beta=1.0), m.model, guide, x, num_data=8, beta=0.3)
    assert per_call == loss[0.3]


def _draws(backend, m, x, n, analytic_kl, seed=0):
    """``n`` independent one-particle ELBO losses: the per-particle sums of the terms that
    ``ELBO(num_particles=n)`` averages, drawn in one vectorised (on NumPyro compiled) pass."""

    def losses(*key):  # NumPyro's rng_key, or nothing on Pyro
        out = backend.particles.particle_terms(
            *key,
            m.model,
            m.guide,
            (x,),
            {},
            num_particles=n,
            analytic_kl=analytic_kl,
            require_rsample=True,
        )
        return -out.data_scale * sum(out.terms.values()).sum(-1)  # (n,)

    return backend.numpy(backend.call(backend.jit(losses), seed=seed))


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_analytic_kl_has_the_same_mean_and_less_variance(backend, float64, kind):
    m, x = make(backend, kind), data(backend, kind, 3)
    n = 4000
    mc, analytic = (_draws(backend, m, x, n, analytic_kl=a) for a in (False, True))
    se = math.sqrt(mc.var() / n + analytic.var() / n)
    assert abs(mc.mean() - analytic.mean()) < 4 * se  # same expectation, 4 standard errors
    # Every latent term of the VAE is exact; the HVAE's z1 stays Monte Carlo.
    assert analytic.var() < (0.8 if kind == "vae" else 1.0) * mc.var()
    # These are the objective's own draws: a one-particle ELBO is one of them.
    loss = backend.loss(backend.inference.ELBO(analytic_kl=True), m.model, m.guide, x, seed=1)
    assert loss == pytest.approx(_draws(backend, m, x, 1, True, seed=1).item(), rel=1e-12)


def test_analytic_kl_only_where_valid(backend):
    kl_sites = backend.particles.analytic_kl_sites
    for kind, expected in (("vae", ["z"]), ("hvae", ["z2"])):
        m, x = make(backend, kind), data(backend, kind, 2)
        # HVAE: p(z1 | z2) depends on z2, which the guide draws after z1, so z1 stays MC.
        assert kl_sites(*backend.traces(m.model, m.guide, x)) == expected
    m, x = make(backend, "vae"), data(backend, "vae", 2)
    guide = backend.condition(m.guide, latents("vae", 1, 2))
    assert kl_sites(*backend.traces(m.model, guide, x)) == []  # conditioned: not a draw from q


def test_analytic_kl_is_exact_for_a_vae_with_fixed_draws(backend, float64):
    m, x = make(backend, "vae"), data(backend, "vae", 4)
    loc, scale = (backend.numpy(a) for a in m.encode(x))
    kl = np.sum(0.5 * (scale**2 + loc**2 - 1) - np.log(scale))  # KL(q || N(0, I))
    z = {"z": loc + scale * np.random.default_rng(0).normal(size=(5, 4, 3))}
    guide = backend.fix(m.guide, z)  # z stays a draw of q, so the closed form applies
    loss = backend.loss(backend.inference.ELBO(5, analytic_kl=True), m.model, guide, x)
    np.testing.assert_allclose(-loss, _log_lik(backend, m, x, z) - kl, rtol=1e-10)


def test_beta_zero_analytic_equals_monte_carlo_likelihood_term(backend, float64):
    m, x = make(backend, "vae"), data(backend, "vae", 4)
    inf = backend.inference
    a = backend.loss(inf.ELBO(beta=0.0), m.model, m.guide, x, seed=5)
    b = backend.loss(inf.ELBO(beta=0.0, analytic_kl=True), m.model, m.guide, x, seed=5)
    assert a == pytest.approx(b, rel=1e-12)  # same z, and the latent terms weigh nothing


OBJECTIVES = {
    "elbo": lambda inf: inf.ELBO(),
    "elbo-k2": lambda inf: inf.ELBO(num_particles=2),
    "elbo-analytic-k2": lambda inf: inf.ELBO(num_particles=2, analytic_kl=True),
    "elbo-beta": lambda inf: inf.ELBO(beta=0.5),
    "iwae": lambda inf: inf.IWAE(num_particles=3),
}


@pytest.mark.parametrize("kind", ["vae", "vae-gaussian", "hvae"])
@pytest.mark.parametrize("batch", [1, 5])
def test_gradients_reach_every_parameter(backend, kind, batch):
    m = make(backend, kind)
    x = backend.numpy(data(backend, kind, batch))
    objectives = {
        name: make_objective(backend.inference) for name, make_objective in OBJECTIVES.items()
    }
    grads = backend.grads(objectives, m, x, num_data=10)
    assert grads.keys() == OBJECTIVES.keys()
    for name, by_param in grads.items():
        assert by_param, name
        for pname, g in by_param.items():
            assert g is not None, (name, pname)
            assert np.isfinite(g).all(), (name, pname)
            assert np.abs(g).sum() > 0, (name, pname)


@pytest.mark.parametrize("bad", [0, -1, 2.0, 1.5, True])
def test_bad_num_particles_is_refused_with_one_message(backend, bad):
    message = re.escape(f"num_particles must be a positive integer, got {bad!r}")
    inf = backend.inference
    for make_objective in (inf.ELBO, inf.IWAE, inf.SemiSupervisedELBO):
        with pytest.raises(ConfigError, match=message):
            make_objective(num_particles=bad)


def test_bad_weights_are_config_errors(backend):
    inf = backend.inference
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        inf.ELBO(beta=-1.0)
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        inf.SemiSupervisedELBO(beta=-0.5)
    with pytest.raises(ConfigError, match="alpha must be >= 0"):
        inf.SemiSupervisedELBO(alpha=-1.0)


def test_discrete_latents_have_weights_but_no_reparameterised_bound(backend):
    ppl, dist = backend.ppl, backend.dist

    def model(x):
        with ppl.plate("data", x.shape[0]):
            c = ppl.sample("c", dist.Bernoulli(0.5))
            ppl.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with ppl.plate("data", x.shape[0]):
            ppl.sample("c", dist.Bernoulli(0.3))

    x = backend.array(np.zeros(3))
    for objective in (backend.inference.ELBO(), backend.inference.IWAE(num_particles=2)):
        with pytest.raises(ConfigError, match="reparameterised"):
            backend.call(objective, model, guide, x)
    log_w = backend.call(backend.inference.log_weights, model, guide, x, num_particles=2)
    assert log_w.shape == (2, 3)
