"""What only the NumPyro backend does: a model is a value, so ``bind`` returns a new model
holding the given params (Pyro's copies them into the module and returns it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from ppgen.errors import ConfigError
from ppgen.models.numpyro import VAE, LinearGaussian

KEY = jax.random.PRNGKey(0)


def _params(model, x):
    trs = [handlers.trace(handlers.seed(f, KEY)).get_trace(x) for f in (model.model, model.guide)]
    return {n: s["value"] for tr in trs for n, s in tr.items() if s["type"] == "param"}


def test_bind_returns_a_new_model_with_the_given_params():
    vae = VAE(12, latent=3, hidden=(8,), likelihood="gaussian")
    params = jax.tree.map(lambda a: a + 0.5, _params(vae, jnp.zeros((2, 12))))
    bound = vae.bind(params)
    assert bound is not vae
    np.testing.assert_allclose(
        bound.get_weights()["decoder_scale_raw"], vae.get_weights()["decoder_scale_raw"] + 0.5
    )
    np.testing.assert_allclose(
        bound.get_weights()["encoder.layers.0.bias"],
        vae.get_weights()["encoder.layers.0.bias"] + 0.5,
        rtol=1e-6,
    )
    with pytest.raises(ConfigError, match="params lack"):
        vae.bind({})


def test_linear_gaussian_bind_leaves_the_model_alone():
    a, b = LinearGaussian(5, 2, seed=0), LinearGaussian(5, 2, seed=1)
    before = b.get_weights()
    bound = b.bind(_params(a, jnp.zeros((2, 5))))
    np.testing.assert_array_equal(np.asarray(bound.guide_A), np.asarray(a.guide_A))
    for k, v in before.items():
        np.testing.assert_array_equal(b.get_weights()[k], v)
