"""What every NumPyro model of ppgen shares: input checks, the ``"data"`` plate, the
observation model and weights in numpy (mirrors :mod:`ppgen.models.pyro.base`).

A :class:`LatentVariableModel` holds its parameters as attributes: Equinox networks (named
in ``nets``, registered with ``eqx_module`` under the same names) and plain arrays (named in
``arrays``, ``numpyro.param`` sites of the same names). Every Gaussian layer reads a network
output as ``[loc, pre_scale]`` on the last axis with ``scale = softplus(pre_scale) +
MIN_SCALE``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Self

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.util import not_jax_tracer

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import MIN_SCALE, UNIT_SCALE_RAW, check_likelihood, check_weights
from ppgen.models.numpyro.nets import load_net_weights, net_weights

__all__ = ["LatentVariableModel", "check_x", "normal_params"]


def normal_params(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A network output ``[loc, pre]``, ``(..., 2 d)``, as the Gaussian parameters
    ``(loc, softplus(pre) + MIN_SCALE)``, each ``(..., d)``."""
    loc, pre = jnp.split(out, 2, axis=-1)
    return loc, jax.nn.softplus(pre) + MIN_SCALE


def check_x(x: jax.Array, x_dim: int, support: str = "real") -> jax.Array:
    """Return ``x`` if it is a ``(batch, x_dim)`` array of finite values in ``support``.

    The shape is always checked (inside ``jit`` too); the values only on concrete arrays,
    so a trainer's ``init`` on the first rows is where they catch bad data. The support
    check follows NumPyro's distribution validation (on by default), as the Pyro twin
    follows Pyro's: with it off, NumPyro's Bernoulli scores grey values by the cross-entropy.

    Args:
        x: The data, a JAX or numpy array, concrete or traced.
        x_dim: Features per example.
        support: ``"real"`` (finite), ``"binary"`` (0 or 1: a Bernoulli likelihood's data) or
            ``"unit_interval"`` (in [0, 1]: grey values a Bernoulli cross-entropy scores).

    Raises:
        DataError: ``x`` has another shape, or values outside ``support``.
    """
    shape = jnp.shape(x)
    if len(shape) != 2 or shape[-1] != x_dim:
        raise DataError(
            f"x has shape {shape} but this model needs (batch, {x_dim}); flatten each "
            f"example (x.reshape(len(x), -1)) or build the model with x_dim="
            f"{shape[-1] if shape else '...'}"
        )
    if not not_jax_tracer(x):
        return x
    x_np = np.asarray(x)
    if not np.all(np.isfinite(x_np)):
        raise DataError("x contains NaN or Inf; drop or impute those examples first")
    if not dist.Distribution._validate_args:
        return x
    if support == "binary" and np.any((x_np != 0) & (x_np != 1)):
        raise DataError(
            "a Bernoulli likelihood needs binary x (0 or 1); binarize the data "
            "(e.g. Trainer(..., transform=DynamicBinarization())) or "
            "use likelihood='gaussian'"
        )
    if support == "unit_interval" and x_np.size and (x_np.min() < 0 or x_np.max() > 1):
        raise DataError(
            "a Bernoulli likelihood needs x in [0, 1] (binary or grey values); rescale "
            "the data (e.g. x / 255) or use likelihood='gaussian'"
        )
    return x


class LatentVariableModel:
    """Plumbing shared by ppgen's NumPyro models: input checks, the ``"data"`` plate, the
    likelihood ``p(x | decoder output)`` and the weights as numpy arrays.

    Subclasses with a decoder call :meth:`_init_likelihood` (which sets ``x_dim``,
    ``likelihood`` and, for a Gaussian, a ``fixed_scale`` or a learned per-feature
    ``decoder_scale_raw``); others set ``x_dim`` and ``likelihood`` themselves. ``nets`` and
    ``arrays`` name the attributes that hold parameters.
    """

    x_dim: int
    likelihood: str
    nets: tuple[str, ...] = ()  # Equinox networks, also their numpyro module names
    arrays: tuple[str, ...] = ()  # plain arrays, also their numpyro param names
    fixed_scale: float | None = None
    decoder_scale_raw: jax.Array | None = None  # learned Gaussian scale (pre-softplus)
    # What a Bernoulli model's data may hold (a subclass that scores grey values widens it).
    bernoulli_support = "binary"

    def _init_likelihood(self, x_dim: int, likelihood: str, scale: float | str) -> None:
        self.fixed_scale = check_likelihood(x_dim, likelihood, scale)
        self.x_dim, self.likelihood = int(x_dim), likelihood
        if likelihood == "gaussian" and self.fixed_scale is None:
            self.decoder_scale_raw = jnp.full(self.x_dim, UNIT_SCALE_RAW)
            self.arrays = ("decoder_scale_raw",)

    def _check_x(self, x: jax.Array) -> jax.Array:
        """``x`` as the densities need it: binary for a Bernoulli, finite for a Gaussian."""
        support = self.bernoulli_support if self.likelihood == "bernoulli" else "real"
        return check_x(x, self.x_dim, support)

    def _check_input(self, x: jax.Array) -> jax.Array:
        """``x`` as the networks read it: grey levels too (e.g. data a Bernoulli model was
        trained on with dynamic binarization), finite."""
        return check_x(x, self.x_dim)

    @staticmethod
    def _plate(x: jax.Array, num_data: int | None) -> numpyro.plate:
        """The ``"data"`` plate: per-dataset scale ``num_data / len(x)``."""
        size = x.shape[0] if num_data is None else int(num_data)
        if size < x.shape[0]:
            raise ConfigError(f"num_data={num_data} is smaller than the batch ({x.shape[0]})")
        return numpyro.plate("data", size, subsample_size=x.shape[0])

    def _observation(self, out: jax.Array) -> dist.Distribution:
        """p(x | decoder output): Bernoulli(logits) or Normal(mean, scale), one event."""
        if self.likelihood == "bernoulli":
            return dist.Bernoulli(logits=out).to_event(1)
        if self.fixed_scale is not None:
            return dist.Normal(out, self.fixed_scale).to_event(1)
        raw = numpyro.param("decoder_scale_raw", self.decoder_scale_raw)
        return dist.Normal(out, jax.nn.softplus(raw) + MIN_SCALE).to_event(1)

    def _mean(self, out: jax.Array) -> jax.Array:
        """E[x | decoder output]: Bernoulli probabilities or the Gaussian mean."""
        return jax.nn.sigmoid(out) if self.likelihood == "bernoulli" else out

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as numpy with torch-style keys (``encoder.layers.0.weight``, torch
        layout: ``Linear`` weight is ``(out, in)``); plain arrays under their own names."""
        weights = {
            f"{name}.{key}": value
            for name in self.nets
            for key, value in net_weights(getattr(self, name)).items()
        }
        weights.update({name: np.asarray(getattr(self, name)) for name in self.arrays})
        return weights

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load ``weights`` in place (keys and shapes as :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        for name in self.nets:
            prefix = f"{name}."
            own = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            setattr(self, name, load_net_weights(getattr(self, name), own))
        for name in self.arrays:
            setattr(self, name, jnp.asarray(weights[name], dtype=getattr(self, name).dtype))

    def bind(self, params: Mapping[str, jax.Array]) -> Self:
        """A copy of this model holding trained NumPyro params (``Trainer.params(state)``).

        Raises:
            ConfigError: ``params`` lacks one of this model's parameter sites.
        """
        missing = [f"{n}$params" for n in self.nets if f"{n}$params" not in params]
        missing += [n for n in self.arrays if n not in params]
        if missing:
            raise ConfigError(f"params lack {missing}; pass the params of this model's guide")
        bound = copy.copy(self)
        for name in self.nets:
            setattr(bound, name, eqx.combine(params[f"{name}$params"], getattr(self, name)))
        for name in self.arrays:
            setattr(bound, name, jnp.asarray(params[name]))
        return bound
