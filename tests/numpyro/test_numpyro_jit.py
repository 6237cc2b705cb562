"""What only the NumPyro backend does: objectives and estimators run inside ``jit``, where
``beta`` may be a traced value (a KL-annealing schedule that never recompiles)."""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ppgen.inference.numpyro import ELBO, log_weights
from ppgen.models.numpyro import VAE, LinearGaussian

KEY = jax.random.PRNGKey(0)


def test_a_traced_beta_equals_the_fixed_one_and_compiles_once(float64):
    vae = VAE(10, latent=3, hidden=(8,))
    x = jnp.asarray((np.random.default_rng(0).random((4, 10)) < 0.4) * 1.0)
    guide = handlers.condition(vae.guide, data={"z": jax.random.normal(KEY, (5, 4, 3))})
    traces = []

    @jax.jit
    def traced(x, beta):
        traces.append(beta)  # runs once per compilation
        # The keyword (what the trainer passes, traced) overrides the attribute.
        return ELBO(num_particles=5)(KEY, vae.model, guide, x, beta=beta)

    for beta in (0.0, 0.3, 1.0):
        fixed = ELBO(num_particles=5, beta=beta)(KEY, vae.model, guide, x)
        np.testing.assert_allclose(traced(x, beta), fixed, rtol=1e-10)
    assert len(traces) == 1


def test_log_weights_compile(float64):
    lg = LinearGaussian(5, 2, seed=0).optimal_guide()
    x = lg.b + jax.random.normal(jax.random.PRNGKey(1), (4, 5))

    @jax.jit
    def weights(x):  # per datapoint: the same with and without the per-dataset scale
        return [
            log_weights(KEY, lg.model, lg.guide, x, num_particles=7, num_data=num_data)
            for num_data in (None, 40)
        ]

    for lw in weights(x):
        assert lw.shape == (7, 4)
        np.testing.assert_allclose(lw, jnp.broadcast_to(lg.exact_log_px(x), (7, 4)), atol=1e-6)
