"""Per-batch noise a trainer applies to its data inputs: dynamic binarization, input noise
and uniform dequantisation noise.

A trainer's ``transform`` is called once per data input of every training step with the
epoch's noise generator (derived from ``(seed, epoch)``, so a resumed epoch draws the same
noise), the minibatch and the rows it came from; evaluation sees the data as it is.
Mirrors ``ppgen.inference.numpyro.noise`` (same classes; the randomness comes first, a
``torch.Generator`` here where NumPyro's take a PRNG key).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ppgen.data.checks import check_input_scale, check_unit_interval
from ppgen.inference.checks import check_noise_width

__all__ = ["DynamicBinarization", "InputNoise", "UniformNoise"]


@dataclass(frozen=True)
class DynamicBinarization:
    """Draw ``x ~ Bernoulli(x)`` afresh for every minibatch (Salakhutdinov & Murray 2008;
    the dynamically binarized MNIST of Burda et al. 2015). Data must lie in [0, 1]."""

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Raise :class:`~ppgen.errors.DataError` unless ``x`` lies in [0, 1]."""
        check_unit_interval(x)

    def __call__(
        self, generator: torch.Generator, x: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """One Bernoulli draw per value of ``x`` (batch, ...), same shape and dtype."""
        return torch.bernoulli(x, generator=generator)


class InputNoise:
    """Gaussian input noise: ``x + scale[rows] * eps``, ``eps ~ N(0, 1)`` drawn from the
    epoch's ``torch.Generator`` at every training step (M1+M2 of Kingma et al. 2014 trains
    M2 on ``z1 ~ q(z1 | x)`` this way: ``x`` holds M1's posterior means, ``scale`` its
    posterior standard deviations).

    Args:
        scale: ``(N, D)`` float standard deviations, one per value of the training data,
            kept as numpy and copied to a tensor of the data's dtype at the first step.

    Raises:
        DataError: Not a finite, non-negative float array ``(N, D)`` (:meth:`check`: not of
            the training data's shape).
    """

    def __init__(self, scale: np.ndarray) -> None:
        self.scale = check_input_scale(scale)
        self._cache: tuple[torch.dtype, torch.Tensor] | None = None

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Raise :class:`~ppgen.errors.DataError` unless ``scale`` has ``x``'s shape (or,
        for rows ``rows`` of the training data, its rows' shape)."""
        scale = self.scale if rows is None else self.scale[np.asarray(rows)]
        check_input_scale(scale, np.shape(x))

    def __call__(
        self, generator: torch.Generator, x: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """``x`` (batch, D) plus Gaussian noise of the rows' standard deviations."""
        if self._cache is None or self._cache[0] != x.dtype:
            self._cache = (x.dtype, torch.as_tensor(self.scale, dtype=x.dtype))
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x + self._cache[1][rows] * eps


@dataclass(frozen=True)
class UniformNoise:
    """Uniform dequantisation noise: ``x + width * u``, ``u ~ U[0, 1)`` drawn afresh from the
    epoch's ``torch.Generator`` at every training step (Uria et al. 2013; Theis et al.
    2016). A flow trained on ``(k + u) / L`` for pixels ``k`` of ``L`` grey levels (data
    ``k / L``, ``width = 1 / L``) fits a density whose integral over each pixel's bin is a
    lower bound on the discrete data's likelihood.

    Args:
        width: The noise's width, a positive number (``1 / L``).

    Raises:
        ConfigError: ``width`` not a positive finite number.
    """

    width: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_noise_width(self.width))

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Any finite data (the trainer's own check) take uniform noise."""

    def __call__(
        self, generator: torch.Generator, x: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        """``x`` (batch, D) plus ``width`` times uniform noise, same shape and dtype."""
        return x + self.width * torch.rand(x.shape, generator=generator, dtype=x.dtype)
