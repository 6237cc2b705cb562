"""ELBO and IWAE: analytic KL, beta weighting, gradients to every parameter, bad options."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

from ppgen.errors import ConfigError
from ppgen.inference.numpyro import ELBO, IWAE, log_weights
from ppgen.models.numpyro import VAE, HierarchicalVAE

KEY = jax.random.PRNGKey(0)


def _binary(batch, x_dim=10, seed=0):
    return jnp.asarray((np.random.default_rng(seed).random((batch, x_dim)) < 0.4) * 1.0)


def _draws(objectives, model, x, n):
    """``n`` independent evaluations of each one-particle objective, in one compiled call."""

    def one(key):
        return [objective(key, model.model, model.guide, x) for objective in objectives]

    return [np.asarray(v) for v in jax.jit(jax.vmap(one))(jax.random.split(KEY, n))]


@pytest.mark.parametrize(
    "model",
    [VAE(10, latent=3, hidden=(8,)), HierarchicalVAE(10, latents=(4, 2), hidden=((8,), (5,)))],
    ids=["vae", "hvae"],
)
def test_analytic_kl_has_the_same_mean_and_lower_variance(model):
    x = _binary(3)
    mc, kl = _draws([ELBO(), ELBO(analytic_kl=True)], model, x, 4000)
    # Same expectation: 5 standard errors of the difference of the two means.
    se = np.sqrt(mc.var() / len(mc) + kl.var() / len(kl))
    assert abs(mc.mean() - kl.mean()) < 5 * se
    assert kl.var() < mc.var()


def test_analytic_kl_is_exact_for_a_vae_with_fixed_latents(float64):
    vae = VAE(10, latent=3, hidden=(8,))
    x = _binary(4)

    @jax.jit
    def values(x):
        loc, scale = vae.encode(x)
        kl = jnp.sum(0.5 * (scale**2 + loc**2 - 1) - jnp.log(scale))  # KL(q || N(0, I))
        z = loc + scale * jax.random.normal(KEY, (5, 4, 3))
        guide = handlers.substitute(vae.guide, data={"z": z})  # a draw of q: KL applies
        tr = handlers.trace(handlers.substitute(vae.model, data={"z": z})).get_trace(x)
        log_lik = tr["x"]["fn"].log_prob(x).mean(0).sum()
        return log_lik - kl, ELBO(num_particles=5, analytic_kl=True)(KEY, vae.model, guide, x)

    expected, loss = values(x)
    np.testing.assert_allclose(-loss, expected, rtol=1e-10)


def test_beta_weights_the_latent_terms(float64):
    vae = VAE(10, latent=3, hidden=(8,))
    x = _binary(4)
    z = jax.random.normal(KEY, (5, 4, 3))
    guide = handlers.condition(vae.guide, data={"z": z})
    betas = (0.0, 0.3, 1.0)

    @jax.jit
    def values(x, traced_beta):
        tr = handlers.trace(handlers.substitute(vae.model, data={"z": z})).get_trace(x)
        log_lik = tr["x"]["fn"].log_prob(x).mean(0).sum()  # expected log-likelihood term
        lw = log_weights(KEY, vae.model, guide, x, num_particles=5)
        fixed = [ELBO(num_particles=5, beta=b)(KEY, vae.model, guide, x) for b in betas]
        # The keyword (what the trainer passes, traced) overrides the attribute.
        traced = ELBO(num_particles=5)(KEY, vae.model, guide, x, beta=traced_beta)
        return log_lik, lw, fixed, traced

    for i, beta in enumerate(betas):
        log_lik, lw, fixed, traced = values(x, beta)
        latent = lw.mean(0).sum() - log_lik  # E[log p(z) - log q(z | x)]
        np.testing.assert_allclose(-fixed[i], log_lik + beta * latent, rtol=1e-10)
        np.testing.assert_allclose(traced, fixed[i], rtol=1e-10)


def _params(model, x):
    trs = [handlers.trace(handlers.seed(f, KEY)).get_trace(x) for f in (model.model, model.guide)]
    return {n: s["value"] for tr in trs for n, s in tr.items() if s["type"] == "param"}


@pytest.mark.parametrize(
    "model",
    [
        VAE(10, latent=3, hidden=(8,), likelihood="gaussian"),
        HierarchicalVAE(10, latents=(4, 2), hidden=((8,), (5,))),
    ],
    ids=["vae-gaussian", "hvae"],
)
def test_gradients_reach_every_parameter(model):
    x = _binary(5)
    params = _params(model, x)
    objectives = {"elbo": ELBO(num_particles=2), "iwae": IWAE(num_particles=3)}

    def loss(params, objective):
        m = handlers.substitute(model.model, data=params)
        g = handlers.substitute(model.guide, data=params)
        return objective(KEY, m, g, x, num_data=50)

    grads = jax.jit(lambda p: {k: jax.grad(loss)(p, o) for k, o in objectives.items()})(params)
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert len(leaves) == len(objectives) * len(jax.tree_util.tree_leaves(params))
    for path, g in leaves:
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
        assert bool(jnp.any(g != 0)), jax.tree_util.keystr(path)


def test_bad_options_and_discrete_latents_are_config_errors():
    with pytest.raises(ConfigError):
        ELBO(num_particles=0)
    with pytest.raises(ConfigError):
        ELBO(beta=-1.0)
    with pytest.raises(ConfigError):
        IWAE(num_particles=2.5)

    def model(x):
        with numpyro.plate("data", x.shape[0]):
            c = numpyro.sample("c", dist.Bernoulli(0.5))
            numpyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("c", dist.Bernoulli(0.3))

    with pytest.raises(ConfigError, match="reparameterised"):
        ELBO()(KEY, model, guide, jnp.zeros(3))
    assert log_weights(KEY, model, guide, jnp.zeros(3), num_particles=2).shape == (2, 3)
