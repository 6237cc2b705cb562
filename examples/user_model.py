"""Your own model-guide pair, trained and evaluated by ppgen (NumPyro backend).

A linear-Gaussian latent model (probabilistic PCA) written in plain NumPyro, with its own
constrained parameter and an amortized guide, none of it from ppgen. ppgen's Trainer fits it
(each epoch one jitted ``lax.scan``), and ppgen's importance-sampled estimator of log p(x) is
checked against the exact value, which this model has in closed form:
x ~ N(0, W W^T + sigma^2 I).

    python examples/user_model.py [--epochs 30] [--k 5000]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions import constraints

from ppgen.inference.numpyro import ELBO, Trainer, evaluate_log_likelihood

X_DIM, Z_DIM = 5, 2


def model(x, num_data=None):
    W = numpyro.param("W", 0.1 * jax.random.normal(jax.random.PRNGKey(0), (X_DIM, Z_DIM)))
    sigma = numpyro.param("sigma", 1.0, constraint=constraints.positive)
    with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([Z_DIM]).to_event(1))
        numpyro.sample("x", dist.Normal(z @ W.T, sigma).to_event(1), obs=x)


def guide(x, num_data=None):
    A = numpyro.param("A", jnp.zeros((Z_DIM, X_DIM)))
    s = numpyro.param("s", 0.5 * jnp.ones(Z_DIM), constraint=constraints.positive)
    with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
        numpyro.sample("z", dist.Normal(x @ A.T, s).to_event(1))


def exact_log_px(params: dict, x: np.ndarray) -> np.ndarray:
    W, sigma = params["W"], params["sigma"]
    cov = W @ W.T + sigma**2 * jnp.eye(X_DIM)
    return np.asarray(dist.MultivariateNormal(jnp.zeros(X_DIM), cov).log_prob(x))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--k", type=int, default=5000, help="importance samples")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    W_true = rng.normal(size=(X_DIM, Z_DIM))
    x = rng.normal(size=(2000, Z_DIM)) @ W_true.T + 0.3 * rng.normal(size=(2000, X_DIM))
    x_train, x_test = x[:1800].astype(np.float32), x[1800:].astype(np.float32)

    trainer = Trainer(model, guide, ELBO(), lr=1e-2, batch_size=100, num_data=len(x_train))
    state = trainer.init(0, x_train[:100])
    for epoch in range(args.epochs):
        state, metrics = trainer.train_epoch(state, x_train, epoch)
    params = trainer.params(state)
    log_px = evaluate_log_likelihood(
        jax.random.PRNGKey(1),
        handlers.substitute(model, data=params),
        handlers.substitute(guide, data=params),
        x_test,
        num_samples=args.k,
        batch_size=100,
    )
    exact = exact_log_px(params, x_test)
    result = {
        "train_loss": float(metrics["loss"]),
        "estimated_log_px": float(np.mean(log_px)),
        "exact_log_px": float(np.mean(exact)),
        "max_abs_error": float(np.max(np.abs(log_px - exact))),
    }
    print(
        f"after {args.epochs} epochs: train loss {result['train_loss']:.3f} nats; test log p(x) "
        f"estimated {result['estimated_log_px']:.4f}, exact {result['exact_log_px']:.4f} "
        f"(max error {result['max_abs_error']:.4f} nats per example, k={args.k})"
    )
    return result


if __name__ == "__main__":
    main()
