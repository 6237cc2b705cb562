"""Probabilistic PCA as a Pyro model/guide pair, with its closed forms.

Tipping & Bishop 1999 (*Probabilistic Principal Component Analysis*):
``z ~ N(0, I_d)``, ``x | z ~ N(W z + b, sigma^2 I_D)``, hence ``x ~ N(b, W W^T + sigma^2 I)``
and ``z | x ~ N(M^{-1} W^T (x - b), sigma^2 M^{-1})`` with ``M = W^T W + sigma^2 I``.
The estimators in :mod:`ppgen.inference.pyro` are tested against these exact values.
"""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppgen.errors import ConfigError
from ppgen.models.pyro.base import LatentVariableModel
from ppgen.models.pyro.params import local_param

__all__ = ["LinearGaussian"]


class LinearGaussian(LatentVariableModel):
    """Probabilistic PCA with an amortized Gaussian guide ``q(z|x) = N(A x + c, diag(s^2))``.

    Parameters (param sites and weight keys): ``W (x_dim, latent)``, ``b (x_dim,)``,
    ``log_sigma ()``, ``guide_A (latent, x_dim)``, ``guide_c (latent,)``,
    ``guide_log_s (latent,)``. ``W`` starts with orthogonal columns, so the exact posterior
    covariance ``sigma^2 (W^T W + sigma^2 I)^{-1}`` is diagonal and the diagonal guide can
    match it exactly (:meth:`optimal_guide`); the guide itself starts far from it.

    Args:
        x_dim: Observed dimension D.
        latent: Latent dimension d (at most D).
        seed: Seed of the initial parameters.
        noise: Initial observation noise ``sigma``.
    """

    likelihood = "gaussian"

    def __init__(self, x_dim: int, latent: int, seed: int = 0, noise: float = 0.5) -> None:
        super().__init__()
        if not 1 <= int(latent) <= int(x_dim):
            raise ConfigError(f"need 1 <= latent <= x_dim, got latent={latent}, x_dim={x_dim}")
        if not noise > 0:
            raise ConfigError(f"noise must be positive, got {noise!r}")
        self.x_dim, self.latent = int(x_dim), int(latent)
        g = torch.Generator().manual_seed(int(seed))
        dtype = torch.get_default_dtype()
        randn = lambda *shape: torch.randn(*shape, generator=g, dtype=dtype)  # noqa: E731
        q, _ = torch.linalg.qr(randn(self.x_dim, self.latent))  # orthonormal columns
        lengths = 0.5 + torch.rand(self.latent, generator=g, dtype=dtype)
        self.W = nn.Parameter(q * lengths)
        self.b = nn.Parameter(0.5 * randn(self.x_dim))
        self.log_sigma = nn.Parameter(torch.tensor(math.log(noise), dtype=dtype))
        self.guide_A = nn.Parameter(0.1 * randn(self.latent, self.x_dim))
        self.guide_c = nn.Parameter(torch.zeros(self.latent, dtype=dtype))
        self.guide_log_s = nn.Parameter(torch.full((self.latent,), -0.5, dtype=dtype))

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z ~ N(0, I)``, ``x ~ N(W z + b, sigma^2 I)`` in the ``"data"`` plate."""
        x = self._check_x(x)
        W, b = local_param("W", self.W), local_param("b", self.b)
        sigma = local_param("log_sigma", self.log_sigma).exp()
        with self._plate(x, num_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), self.latent), 1.0).to_event(1))
            loc = z @ W.T + b  # (..., batch, x_dim)
            pyro.sample("x", dist.Normal(loc, sigma.expand_as(loc)).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``z ~ N(A x + c, diag(exp(log_s)^2))``."""
        x = self._check_x(x)
        A, c = local_param("guide_A", self.guide_A), local_param("guide_c", self.guide_c)
        s = local_param("guide_log_s", self.guide_log_s).exp()
        with self._plate(x, num_data):
            loc = x @ A.T + c  # (batch, latent)
            pyro.sample("z", dist.Normal(loc, s.expand_as(loc)).to_event(1))

    def _precision_factor(self) -> torch.Tensor:
        """``M = W^T W + sigma^2 I`` (latent, latent)."""
        sigma2 = torch.exp(2 * self.log_sigma)
        return self.W.T @ self.W + sigma2 * torch.eye(self.latent, dtype=self.W.dtype)

    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """``log N(x; b, W W^T + sigma^2 I)`` per example, ``(batch,)``."""
        x = self._check_x(x)
        sigma2 = torch.exp(2 * self.log_sigma)
        cov = self.W @ self.W.T + sigma2 * torch.eye(self.x_dim, dtype=self.W.dtype)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    def exact_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z | x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1})``: ``(mean (batch, latent), cov)``."""
        x = self._check_x(x)
        m_inv = torch.linalg.inv(self._precision_factor())
        mean = (x - self.b) @ (m_inv @ self.W.T).T
        return mean, torch.exp(2 * self.log_sigma) * m_inv

    @torch.no_grad()
    def optimal_guide(self) -> LinearGaussian:
        """Set the guide, in place, to the exact posterior and return ``self``:
        ``A = M^{-1} W^T``, ``c = -A b``.

        The variances are ``s_i^2 = sigma^2 / M_ii``, the inverse diagonal of the posterior
        precision: the exact posterior when ``W^T W`` is diagonal (as at initialisation), and
        otherwise the mean-field Gaussian closest to it in ``KL(q || p)``.
        """
        m = self._precision_factor()
        a = torch.linalg.solve(m, self.W.T)
        self.guide_A.copy_(a)
        self.guide_c.copy_(-a @ self.b)
        self.guide_log_s.copy_(self.log_sigma - 0.5 * torch.log(torch.diagonal(m)))
        return self
