"""Per-batch noise a trainer applies to its data inputs: dynamic binarization, input noise
and uniform dequantisation noise.

A trainer's ``transform`` is called once per data input of every training step, inside the
compiled epoch, with a PRNG key derived from ``(seed, epoch, step)``, the minibatch and the
rows it came from; evaluation sees the data as it is. Each transform is an Equinox module
(a pytree), so the compiled epoch takes its arrays as arguments, not as constants. Mirrors
``ppgen.inference.pyro.noise`` (same classes, the backend's randomness).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppgen.data.checks import check_input_scale, check_unit_interval
from ppgen.inference.checks import check_noise_width

__all__ = ["DynamicBinarization", "InputNoise", "UniformNoise"]


class DynamicBinarization(eqx.Module):
    """Draw ``x ~ Bernoulli(x)`` afresh for every minibatch (Salakhutdinov & Murray 2008;
    the dynamically binarized MNIST of Burda et al. 2015). Data must lie in [0, 1]."""

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Raise :class:`~ppgen.errors.DataError` unless ``x`` lies in [0, 1]."""
        check_unit_interval(x)

    def __call__(self, rng_key: jax.Array, x: jax.Array, rows: jax.Array) -> jax.Array:
        """One Bernoulli draw per value of ``x`` (batch, ...), same shape and dtype."""
        return jax.random.bernoulli(rng_key, x).astype(x.dtype)


class InputNoise(eqx.Module):
    """``x + scale[rows] * eps`` with fresh ``eps ~ N(0, 1)`` from the step's PRNG key,
    inside the compiled epoch. M1+M2 (Kingma et al. 2014) trains M2 on features drawn as
    ``z1 ~ q(z1 | x)``: ``x`` is M1's posterior mean, ``scale`` its standard deviation.

    Args:
        scale: ``(N, D)`` float standard deviations, one per training value: a leaf of this
            Equinox module, so the compiled epoch takes it as an argument (never a constant
            compiled into it).

    Raises:
        DataError: ``scale`` is not a finite, non-negative float array ``(N, D)``, or (at
            :meth:`check`) its shape differs from the training data's.
    """

    scale: jax.Array

    def __init__(self, scale: np.ndarray) -> None:
        self.scale = jnp.asarray(check_input_scale(scale))

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Raise :class:`~ppgen.errors.DataError` unless ``scale`` has ``x``'s shape (or,
        for rows ``rows`` of the training data, its rows' shape)."""
        scale = np.asarray(self.scale)
        check_input_scale(scale if rows is None else scale[np.asarray(rows)], np.shape(x))

    def __call__(self, rng_key: jax.Array, x: jax.Array, rows: jax.Array) -> jax.Array:
        """``x`` (batch, D) plus Gaussian noise of the rows' standard deviations."""
        eps = jax.random.normal(rng_key, x.shape, x.dtype)
        return x + self.scale[rows].astype(x.dtype) * eps


class UniformNoise(eqx.Module):
    """Uniform dequantisation noise: ``x + width * u``, ``u ~ U[0, 1)`` drawn afresh from the
    step's PRNG key inside the compiled epoch (Uria et al. 2013; Theis et al. 2016). A flow
    trained on ``(k + u) / L`` for pixels ``k`` of ``L`` grey levels (data ``k / L``,
    ``width = 1 / L``) fits a density whose integral over each pixel's bin is a lower bound
    on the discrete data's likelihood.

    Args:
        width: The noise's width, a positive number (``1 / L``).

    Raises:
        ConfigError: ``width`` not a positive finite number.
    """

    width: float = eqx.field(static=True)

    def __init__(self, width: float) -> None:
        self.width = check_noise_width(width)

    def check(self, x: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Any finite data (the trainer's own check) take uniform noise."""

    def __call__(self, rng_key: jax.Array, x: jax.Array, rows: jax.Array) -> jax.Array:
        """``x`` (batch, D) plus ``width`` times uniform noise, same shape and dtype."""
        return x + self.width * jax.random.uniform(rng_key, x.shape, x.dtype)
