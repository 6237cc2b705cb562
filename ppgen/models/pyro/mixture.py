"""A Gaussian mixture with an amortised categorical guide as a Pyro model/guide pair
(mirrors :mod:`ppgen.models.numpyro.mixture`).

The mixture's component ``z`` of each datapoint is a discrete latent the guide samples, so
it is fitted with the score-function objectives :class:`~ppgen.inference.pyro.NVIL` or
:class:`~ppgen.inference.pyro.VIMCO`; its exact ``log p(x)`` (:meth:`exact_log_px`) makes
the fit comparable with scikit-learn's EM (``GaussianMixture(covariance_type="diag")``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ppgen.errors import ConfigError
from ppgen.models.conventions import MIN_SCALE, UNIT_SCALE_RAW, spawn_seeds
from ppgen.models.pyro.base import LatentVariableModel
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.params import local_module, local_param

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

    def __init__(
        self,
        x_dim: int,
        components: int,
        hidden: Sequence[int] = (32,),
        activation: str = "tanh",
        init_means: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
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
        dtype = torch.get_default_dtype()
        self.mixture_logits = nn.Parameter(torch.zeros(components, dtype=dtype))
        self.means = nn.Parameter(torch.as_tensor(init_means, dtype=dtype))
        self.scale_raw = nn.Parameter(torch.full((components, self.x_dim), UNIT_SCALE_RAW))

    def _components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mixture_logits, means, scales)`` as param sites."""
        logits = local_param("mixture_logits", self.mixture_logits)
        means = local_param("means", self.means)
        scales = softplus(local_param("scale_raw", self.scale_raw)) + MIN_SCALE
        return logits, means, scales

    def model(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``p(z) p(x | z)`` over a minibatch ``x`` of ``(batch, x_dim)``."""
        x = self._check_x(x)
        logits, means, scales = self._components()
        with self._plate(x, num_data):
            z = pyro.sample("z", dist.Categorical(logits=logits))  # (..., batch)
            pyro.sample("x", dist.Normal(means[z], scales[z]).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, num_data: int | None = None) -> None:
        """``q(z | x) = Categorical(logits=g(x))``."""
        x = self._check_x(x)
        encoder = local_module("encoder", self.encoder)
        with self._plate(x, num_data):
            pyro.sample("z", dist.Categorical(logits=encoder(x)))

    @torch.no_grad()
    def exact_log_px(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x) = logsumexp_k [log pi_k + log N(x; means_k, scales_k^2)]``, ``(batch,)``."""
        x = self._check_x(x)
        scales = softplus(self.scale_raw) + MIN_SCALE
        log_pi = torch.log_softmax(self.mixture_logits, -1)
        log_px_z = dist.Normal(self.means, scales).to_event(1).log_prob(x.unsqueeze(-2))
        return torch.logsumexp(log_pi + log_px_z, -1)
