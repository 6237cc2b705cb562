"""Moment matching and optimal transport as losses on a generator program: MMD and the
Sinkhorn divergence (mirrors :mod:`ppgen.inference.numpyro.discrepancy`).

Both compare a batch of the model's samples with the data batch through a statistic of the
two sets and need no critic: one player, the trainer's default group. Like the ELBO's, the
loss is a per-dataset estimate, ``N`` (the ``"data"`` plate's size) times the batch
statistic, so the trainer's metric (divided by ``N``) reads as the statistic itself.
Examples are flattened to vectors, ``(batch, *event) -> (batch, D)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ppgen.errors import DataError
from ppgen.inference.games import (
    check_bandwidths,
    check_epsilon,
    check_rho,
    check_sinkhorn_iterations,
)
from ppgen.inference.pyro.implicit import model_samples
from ppgen.inference.pyro.sinkhorn import check_p, sinkhorn_divergence

__all__ = ["MMD", "Sinkhorn", "kernel_matrix", "mmd2_unbiased"]


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a_i - b_j|^2``, ``(n, m)``, from ``(n, D)`` and ``(m, D)`` (clipped at 0)."""
    sq = a.pow(2).sum(-1)[:, None] + b.pow(2).sum(-1)[None, :] - 2.0 * a @ b.T
    return sq.clamp_min(0.0)


def kernel_matrix(
    a: torch.Tensor, b: torch.Tensor, kernel: str, bandwidths: Sequence[float]
) -> torch.Tensor:
    """``k(a_i, b_j)``, ``(n, m)``: a sum over ``bandwidths`` of Gaussian kernels
    ``exp(-|a - b|^2 / (2 s^2))`` or inverse multiquadrics ``c / (c + |a - b|^2)``."""
    sq = _squared_distances(a, b)
    if kernel == "gaussian":
        return sum(torch.exp(-sq / (2.0 * s**2)) for s in bandwidths)
    return sum(c / (c + sq) for c in bandwidths)


def mmd2_unbiased(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: str = "gaussian",
    bandwidths: Sequence[float] = (1.0,),
) -> torch.Tensor:
    """The unbiased estimate of ``MMD^2(P, Q)`` from ``x ~ P``, ``(n, D)``, and ``y ~ Q``,
    ``(m, D)`` (Gretton et al. 2012, eq. 3): the within-set means exclude the diagonal.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)``; its estimate has expectation
    ``MMD^2`` exactly, so it is 0 on average (and can be negative) when ``P = Q``.

    Raises:
        ConfigError: An unknown kernel or a non-positive bandwidth.
        DataError: A set of fewer than 2 examples.
    """
    bandwidths = check_bandwidths(kernel, bandwidths)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise DataError(
            f"the unbiased MMD^2 needs at least 2 examples in each set, got {n} and {m}; use "
            "a batch size of at least 2"
        )
    k_xx = kernel_matrix(x, x, kernel, bandwidths)
    k_yy = kernel_matrix(y, y, kernel, bandwidths)
    k_xy = kernel_matrix(x, y, kernel, bandwidths)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * k_xy.mean()


@dataclass(frozen=True, eq=False)
class MMD:
    """Generative moment matching: ``N`` times the unbiased ``MMD^2`` between the model's
    samples and the data batch (Li, Swersky & Zemel 2015; Dziugaite, Roy & Ghahramani 2015).

    Args:
        kernel: ``"gaussian"`` (a sum of Gaussian kernels over ``bandwidths``, the
            standard deviations ``s``) or ``"imq"`` (inverse multiquadrics ``c / (c + r^2)``
            over the scales ``c``, Tolstikhin et al. 2018).
        bandwidths: The bandwidths (or IMQ scales), in the data's units.
        site: The model's site holding the samples.

    Call ``mmd(model, guide, *args, **kwargs)`` -> the loss (a scalar).

    Raises:
        ConfigError: An unknown kernel or a non-positive bandwidth; when called, a model
            without the site.
        DataError: When called, samples whose shape differs from the data's.
    """

    kernel: str = "gaussian"
    bandwidths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    site: str = "x"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bandwidths", check_bandwidths(self.kernel, self.bandwidths))

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = model_samples(model, args, kwargs, site=self.site)
        x, data = out.x.reshape(len(out.x), -1), out.data.reshape(len(out.data), -1)
        return out.num_data * mmd2_unbiased(x, data, self.kernel, self.bandwidths)


@dataclass(frozen=True, eq=False)
class Sinkhorn:
    """Minimum Sinkhorn divergence: ``N`` times the debiased Sinkhorn divergence between the
    model's samples and the data batch (Genevay, Peyre & Cuturi 2018), through
    :func:`~ppgen.inference.pyro.sinkhorn.sinkhorn_divergence` (POT).

    Args:
        epsilon: Entropic regularisation (> 0), in the cost's units.
        p: Cost power, ``C(x, y) = |x - y|_2^p`` (1 or 2).
        rho: Unbalanced transport (Sejourne et al. 2019): the weight of the KL penalties on
            the marginals, in the cost's units; ``None``: balanced. Between minibatches of a
            multi-modal distribution it keeps mass on its modes (see ``sinkhorn_divergence``).
        threshold: Sinkhorn's stopping tolerance on the marginals (see
            ``sinkhorn_divergence``).
        max_iterations: Sinkhorn's iteration cap.
        site: The model's site holding the samples.

    Call ``sinkhorn(model, guide, *args, **kwargs)`` -> the loss (a scalar).

    Raises:
        ConfigError: ``epsilon`` <= 0, an unsupported ``p``, ``rho`` <= 0; when called, a
            model without the site.
        DataError: When called, samples whose shape differs from the data's.
    """

    epsilon: float = 1.0
    p: int = 2
    rho: float | None = None
    threshold: float = 1e-4
    max_iterations: int = 1000
    site: str = "x"

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        object.__setattr__(self, "p", check_p(self.p))
        object.__setattr__(self, "max_iterations", check_sinkhorn_iterations(self.max_iterations))
        object.__setattr__(self, "rho", check_rho(self.rho))

    def __call__(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = model_samples(model, args, kwargs, site=self.site)
        x, data = out.x.reshape(len(out.x), -1), out.data.reshape(len(out.data), -1)
        return out.num_data * sinkhorn_divergence(
            x,
            data,
            epsilon=self.epsilon,
            p=self.p,
            rho=self.rho,
            threshold=self.threshold,
            max_iterations=self.max_iterations,
        )
