"""Variational objectives as losses to minimise: ``loss(rng_key, model, guide, *args, **kwargs)``.

Both are negative lower bounds on ``log p(x)`` summed over the minibatch and multiplied by
the ``"data"`` plate's subsample scale ``num_data / batch``, i.e. estimates for the whole
dataset, built on the vectorised particles of
:func:`~ppgen.inference.numpyro.particles.particle_terms` (mirrors
:mod:`ppgen.inference.pyro.objectives`).
Model and guide must already carry their parameters (``handlers.substitute``), as inside
``numpyro.infer.SVI`` or :class:`~ppgen.inference.numpyro.Trainer`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppgen.inference.checks import check_non_negative, check_num_particles
from ppgen.inference.numpyro.particles import particle_terms

__all__ = ["ELBO", "IWAE"]


@dataclass(frozen=True)
class ELBO:
    """Negative evidence lower bound (Kingma & Welling, 2014; beta-VAE: Higgins et al., 2017).

    ``ELBO_beta(x) = E_q[log p(x | z)] + beta * E_q[log p(z) - log q(z | x)]``, estimated with
    ``num_particles`` reparameterised draws ``z ~ q(z | x)`` and averaged over them;
    ``beta = 1`` is the ELBO. ``beta`` scales the latent sites of model and guide
    (:func:`~ppgen.inference.numpyro.handlers.scale_latents`); KL annealing is a schedule
    over it (Bowman et al., 2016).

    Args:
        num_particles: Draws per datapoint, vectorised in one pass.
        analytic_kl: Use the closed-form ``KL(q(z | x) || p(z | ...))`` where NumPyro has
            one registered (Normal/Normal, Independent, ...) and the swap is unbiased (the
            model's parents of ``z`` are drawn before ``z`` in the guide); Monte Carlo
            elsewhere. Lowers the variance of the estimate, not its mean.
            A flow (``TransformedDistribution``) posterior or prior without a registered
            KL is refused when called (ConfigError).
        beta: Weight of the latent (KL) terms.

    Call ``elbo(rng_key, model, guide, *args, beta=None, **kwargs)``: ``beta``, when given,
    overrides the attribute and may be a traced scalar, so a KL-annealing schedule inside
    ``jit`` never recompiles (:class:`~ppgen.inference.numpyro.Trainer` passes it). It is the
    one keyword the objective keeps for itself; every other argument goes to model and guide.

    Raises:
        ConfigError: ``num_particles`` is not a positive integer or ``beta`` is negative;
            when called, a guide latent without a reparameterised sampler, or analytic KL
            where a flow posterior or prior has none.
    """

    num_particles: int = 1
    analytic_kl: bool = False
    beta: float = 1.0

    def __post_init__(self) -> None:
        check_num_particles(self.num_particles)
        check_non_negative("beta", self.beta)

    def __call__(
        self,
        rng_key: jax.Array,
        model: Callable,
        guide: Callable,
        *args: Any,
        beta: float | jax.Array | None = None,
        **kwargs: Any,
    ) -> jax.Array:
        out = particle_terms(
            rng_key,
            model,
            guide,
            args,
            kwargs,
            num_particles=self.num_particles,
            beta=self.beta if beta is None else beta,
            analytic_kl=self.analytic_kl,
            require_rsample=True,
            per_datapoint=False,  # only the total is needed
        )
        terms = out.terms if out.elbo_terms is None else out.elbo_terms
        return -sum(terms.values()) / self.num_particles


@dataclass(frozen=True)
class IWAE:
    """Negative importance-weighted bound (Burda, Grosse & Salakhutdinov, 2015, eq. 8).

    ``L_K(x) = E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]`` with ``z_k ~ q(z | x)``;
    ``L_1`` is the ELBO and ``L_K`` increases to ``log p(x)`` as ``K`` grows.

    Args:
        num_particles: ``K``, drawn in one vectorised pass.

    Raises:
        ConfigError: ``num_particles`` is not a positive integer; when called, a guide
            latent without a reparameterised sampler.
    """

    num_particles: int = 5

    def __post_init__(self) -> None:
        check_num_particles(self.num_particles)

    def __call__(
        self, rng_key: jax.Array, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> jax.Array:
        k = self.num_particles
        out = particle_terms(
            rng_key, model, guide, args, kwargs, num_particles=k, require_rsample=True
        )
        log_w = sum(out.terms.values())  # (K, batch)
        bound = logsumexp(log_w, axis=0) - math.log(k)  # (batch,)
        return -out.data_scale * jnp.sum(bound)
