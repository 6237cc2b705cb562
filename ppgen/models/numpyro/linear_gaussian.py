"""Probabilistic PCA written as an ordinary model/guide pair, with closed forms to test against.

Tipping & Bishop (1999), "Probabilistic Principal Component Analysis": with
``z ~ N(0, I)`` and ``x | z ~ N(W z + b, sigma^2 I)`` the marginal is
``x ~ N(b, W W^T + sigma^2 I)`` and the posterior ``z | x ~ N(M^{-1} W^T (x - b),
sigma^2 M^{-1})`` with ``M = W^T W + sigma^2 I``. Its covariance does not depend on ``x``, so
an affine amortised guide holds the exact posterior whenever ``W^T W`` is diagonal. Every
estimator in ``ppgen.inference`` is checked against these formulas.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppgen.errors import ConfigError
from ppgen.models.numpyro.base import LatentVariableModel

__all__ = ["LinearGaussian"]


class LinearGaussian(LatentVariableModel):
    """Probabilistic PCA with an amortised Gaussian guide.

    Model ``z ~ N(0, I_latent)``, ``x | z ~ N(W z + b, sigma^2 I_x_dim)`` with
    ``sigma = exp(log_sigma)``; guide ``q(z | x) = N(A x + c, diag(exp(log_s)^2))``. The
    NumPyro param sites (and weight keys) are ``W`` ``(x_dim, latent)``, ``b`` ``(x_dim,)``,
    ``log_sigma`` ``()``, ``guide_A`` ``(latent, x_dim)``, ``guide_c`` ``(latent,)`` and
    ``guide_log_s`` ``(latent,)``.

    ``W`` starts with orthogonal columns (so the posterior covariance is diagonal and
    :meth:`optimal_guide` is exact) and the guide starts at the prior ``A = 0, c = 0, s = 1``.
    Arrays take JAX's default float dtype at construction (float64 under ``jax_enable_x64``).

    Args:
        x_dim: Observed dimension, ``>= latent``.
        latent: Latent dimension.
        seed: Seed of the initial ``W`` and ``b``.
        noise: Initial observation noise ``sigma``.
    """

    likelihood = "gaussian"
    arrays = ("W", "b", "log_sigma", "guide_A", "guide_c", "guide_log_s")

    def __init__(self, x_dim: int, latent: int, seed: int = 0, noise: float = 0.5):
        if not 1 <= latent <= x_dim:
            raise ConfigError(f"need 1 <= latent <= x_dim, got latent={latent}, x_dim={x_dim}")
        if not noise > 0:
            raise ConfigError(f"noise must be positive, got {noise}")
        self.x_dim, self.latent = int(x_dim), int(latent)
        rng = np.random.default_rng(seed)  # numpy: building the model runs nothing on device
        q, _ = np.linalg.qr(rng.normal(size=(self.x_dim, self.latent)))
        self.W = jnp.asarray(q * np.linspace(2.0, 1.0, self.latent))  # orthogonal columns
        self.b = jnp.asarray(0.5 * rng.normal(size=self.x_dim))
        self.log_sigma = jnp.asarray(np.log(noise))
        self.guide_A = jnp.zeros((self.latent, self.x_dim))
        self.guide_c = jnp.zeros(self.latent)
        self.guide_log_s = jnp.zeros(self.latent)

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z) p(x | z)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        x = self._check_x(x)
        W, b = numpyro.param("W", self.W), numpyro.param("b", self.b)
        sigma = jnp.exp(numpyro.param("log_sigma", self.log_sigma))
        with self._plate(x, num_data):
            z = numpyro.sample("z", dist.Normal(jnp.zeros(self.latent), 1.0).to_event(1))
            numpyro.sample("x", dist.Normal(z @ W.T + b, sigma).to_event(1), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z | x) = N(A x + c, diag(s^2))``."""
        x = self._check_x(x)
        A, c = numpyro.param("guide_A", self.guide_A), numpyro.param("guide_c", self.guide_c)
        s = jnp.exp(numpyro.param("guide_log_s", self.guide_log_s))
        with self._plate(x, num_data):
            numpyro.sample("z", dist.Normal(x @ A.T + c, s).to_event(1))

    def exact_log_px(self, x: jax.Array) -> jax.Array:
        """``log N(x; b, W W^T + sigma^2 I)`` per row, shape ``(batch,)``."""
        x = self._check_x(x)
        cov = self.W @ self.W.T + jnp.exp(2 * self.log_sigma) * jnp.eye(self.x_dim)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)

    def exact_posterior(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Mean ``(batch, latent)`` and covariance ``(latent, latent)`` of ``p(z | x)``."""
        x = self._check_x(x)
        var = jnp.exp(2 * self.log_sigma)
        m = self.W.T @ self.W + var * jnp.eye(self.latent)  # M = W^T W + sigma^2 I
        mean = jnp.linalg.solve(m, self.W.T @ (x - self.b).T).T
        return mean, var * jnp.linalg.inv(m)

    def optimal_guide(self) -> LinearGaussian:
        """Set the guide, in place, to the best diagonal Gaussian and return ``self``.

        ``A = M^{-1} W^T``, ``c = -A b`` give the exact posterior mean; ``s^2 = sigma^2 /
        diag(M)`` is the exact variance when ``W^T W`` is diagonal (the initial ``W`` and
        every PPCA maximum-likelihood ``W`` up to rotation) and otherwise the mean-field
        optimum ``1 / diag(precision)`` that maximises the ELBO.
        """
        var = jnp.exp(2 * self.log_sigma)
        m = self.W.T @ self.W + var * jnp.eye(self.latent)
        self.guide_A = jnp.linalg.solve(m, self.W.T)
        self.guide_c = -self.guide_A @ self.b
        self.guide_log_s = 0.5 * (jnp.log(var) - jnp.log(jnp.diag(m)))
        return self
