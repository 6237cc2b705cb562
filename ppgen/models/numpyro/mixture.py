"""A Gaussian mixture with an amortised categorical guide as a NumPyro model/guide pair
(mirrors :mod:`ppgen.models.pyro.mixture`).

The mixture's component ``z`` of each datapoint is a discrete latent the guide samples, so
it is fitted with the score-function objectives :class:`~ppgen.inference.numpyro.NVIL` or
:class:`~ppgen.inference.numpyro.VIMCO`; its exact ``log p(x)`` (:meth:`exact_log_px`) makes
the fit comparable with scikit-learn's EM (``GaussianMixture(covariance_type="diag")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import logsumexp
from numpyro.contrib.module import eqx_module

from ppgen.errors import ConfigError
from ppgen.models.conventions import MIN_SCALE, UNIT_SCALE_RAW, spawn_seeds
from ppgen.models.numpyro.base import LatentVariableModel
from ppgen.models.numpyro.nets import MLP

__all__ = ["GaussianMixture"]


class GaussianMixture(LatentVariableModel):
    """Diagonal Gaussian mixture (Bishop, 2006, sec. 9.2) with guide ``q(z | x)``.

    Model ``z ~ Categorical(softmax(mixture_logits))``,
    ``x | z ~ N(means[z], diag(scales[z]^2))`` with ``scales = softplus(scale_raw) + 1e-4``;
    guide ``q(z | x) = Categorical(logits=g(x))`` with ``g`` (``encoder``) an MLP
    ``[x_dim, *hidden, components]``. Parameters (param sites and weight keys):
    ``mixture_logits (components,)``, ``means (components, x_dim)``,
    ``scale_raw (components, x_dim)`` and the encoder's. Site ``"z"`` is ``(..., batch)``.

    Args:
        x_dim: Features of a datapoint.
        components: Number of mixture components.
        hidden: Hidden widths of the encoder.
        activation: Hidden activation of the encoder.
        init_means: Initial ``means`` ``(components, x_dim)`` (e.g. k-means centres); by
            default standard normal draws from ``seed``. Scales start at 1, weights equal.
        seed: Seed of the initial weights.

    Raises:
        ConfigError: ``components`` not a positive integer, ``init_means`` of another shape,
            or a bad network option.
    """

    likelihood = "gaussian"
    nets = ("encoder",)
    arrays = ("mixture_logits", "means", "scale_raw")

    def __init__(
        self,
        x_dim: int,
        components: int,
        hidden: Sequence[int] = (32,),
        activation: str = "tanh",
        init_means: np.ndarray | None = None,
        seed: int = 0,
    ):
        if not isinstance(components, int) or components < 1:
            raise ConfigError(f"components must be a positive integer, got {components!r}")
        self.x_dim, self.components = int(x_dim), components
        enc_seed, means_seed = spawn_seeds(seed, 2)
        self.encoder = MLP([self.x_dim, *hidden, components], activation, seed=enc_seed)
        if init_means is None:
            init_means = np.random.default_rng(means_seed).standard_normal((components, x_dim))
        init_means = np.asarray(init_means, dtype=float)
        if init_means.shape != (components, self.x_dim):
            raise ConfigError(
                f"init_means has shape {init_means.shape}, need ({components}, {self.x_dim})"
            )
        self.mixture_logits = jnp.zeros(components)
        self.means = jnp.asarray(init_means, dtype=jnp.result_type(float))
        self.scale_raw = jnp.full((components, self.x_dim), UNIT_SCALE_RAW)

    def _components(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(mixture_logits, means, scales)`` as param sites."""
        logits = numpyro.param("mixture_logits", self.mixture_logits)
        means = numpyro.param("means", self.means)
        scales = jax.nn.softplus(numpyro.param("scale_raw", self.scale_raw)) + MIN_SCALE
        return logits, means, scales

    def model(self, x: jax.Array, num_data: int | None = None) -> None:
        """``p(z) p(x | z)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        x = self._check_x(x)
        logits, means, scales = self._components()
        with self._plate(x, num_data):
            z = numpyro.sample("z", dist.Categorical(logits=logits))  # (..., batch)
            numpyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=x)

    def guide(self, x: jax.Array, num_data: int | None = None) -> None:
        """``q(z | x) = Categorical(logits=g(x))``."""
        x = self._check_x(x)
        encoder = eqx_module("encoder", self.encoder)
        with self._plate(x, num_data):
            numpyro.sample("z", dist.Categorical(logits=encoder(x)))

    def exact_log_px(self, x: jax.Array) -> jax.Array:
        """``log p(x) = logsumexp_k [log pi_k + log N(x; means_k, scales_k^2)]``, ``(batch,)``."""
        x = self._check_x(x)
        scales = jax.nn.softplus(self.scale_raw) + MIN_SCALE
        log_pi = jax.nn.log_softmax(self.mixture_logits)
        log_px_z = dist.Normal(self.means, scales).to_event(1).log_prob(x[..., None, :])
        return logsumexp(log_pi + log_px_z, axis=-1)
