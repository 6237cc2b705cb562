"""A user's own autoregressive model written as plated conditionals (one Bernoulli site per
dimension inside the ``"data"`` plate, as in the README's tour), scored by ppgen on both
backends: with its empty guide, the trainer's bounds and the log-likelihood estimator are
the exact ``log p(x)``, equal to the closed form on every one of the 2^3 binary vectors of
a 3-dimensional model (brute force)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro.handlers import substitute
from scipy.special import log_expit, logsumexp

import ppgen.inference.numpyro as ni
import ppgen.inference.pyro as pi

W = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [-2.0, 0.7, 0.0]])  # W[i, :i]: x_i on x_<i
B = np.array([0.3, -1.0, 0.5])
X = np.array(list(itertools.product([0.0, 1.0], repeat=3)))  # all 8 binary vectors


def closed_form(x: np.ndarray) -> np.ndarray:
    """``log p(x) = sum_i log sigmoid(s_i (b_i + W[i, :i] x_<i))``, ``s_i = 2 x_i - 1``."""
    logits = B + x @ np.tril(W, -1).T
    return np.sum(x * log_expit(logits) + (1 - x) * log_expit(-logits), axis=-1)


def user_pair(name: str):
    """The model (a logistic regression per dimension, one site each, as a user writes it)
    and its empty guide, in the backend's own names."""
    ppl, dist, array = (
        (pyro, pdist, torch.tensor) if name == "pyro" else (numpyro, ndist, jnp.asarray)
    )
    if name == "pyro":
        pyro.clear_param_store()

    def model(x, num_data=None):
        w = ppl.param("ar_w", array(W))
        b = ppl.param("ar_b", array(B))
        with ppl.plate("data", num_data or len(x), subsample_size=len(x)):
            for i in range(3):
                logits = b[i] + x[..., :i] @ w[i, :i]
                ppl.sample(f"x_{i}", dist.Bernoulli(logits=logits), obs=x[..., i])

    return model, lambda x, num_data=None: None


def test_the_closed_form_is_a_distribution():
    np.testing.assert_allclose(logsumexp(closed_form(X)), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_ppgen_scores_a_plated_user_model_exactly(float64, name):
    """ELBO and IWAE (the trainer's evaluate) and ``evaluate_log_likelihood`` with one or
    several samples give the closed form's ``log p(x)`` of every binary vector (1e-10)."""
    inference = pi if name == "pyro" else ni
    model, guide = user_pair(name)
    want = closed_form(X)
    for objective in (inference.ELBO(), inference.IWAE(3)):
        trainer = inference.Trainer(model, guide, objective, batch_size=8)
        state = trainer.init(0, X)
        np.testing.assert_allclose(trainer.evaluate(state, X)["elbo"], want.mean(), rtol=1e-10)
    for k in (1, 4):
        if name == "pyro":
            got = inference.evaluate_log_likelihood(model, guide, X, num_samples=k, batch_size=3)
        else:
            params = trainer.params(state)
            got = inference.evaluate_log_likelihood(
                jax.random.PRNGKey(k), substitute(model, params), substitute(guide, params), X,
                num_samples=k, batch_size=3,
            )  # fmt: skip
        np.testing.assert_allclose(got, want, rtol=1e-10)
