"""Numpy in, numpy out: calling a NumPyro model's methods with explicit, seeded randomness.

The mirror of ``ppgen.inference.pyro.interop``: :func:`draw` and :func:`compute` are what
backend-free code (``ppgen.runs``, the recipes) calls to sample from, encode or decode a
trained model. NumPyro methods that draw take a PRNG key first; :func:`draw` makes it from
the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["compute", "draw", "to_device"]


def to_device(x: np.ndarray) -> jax.Array:
    """A numpy array on JAX's default device: integers as int32 (labels), everything else
    in JAX's default float dtype (float32, or float64 under ``jax_enable_x64``)."""
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        return jnp.asarray(x, dtype=jnp.int32)
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _device(value: Any) -> Any:
    return to_device(value) if isinstance(value, np.ndarray) else value


def _numpy(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_numpy(v) for v in value)
    return np.asarray(value) if isinstance(value, jax.Array) else value


def compute(method: Callable, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)``, numpy arrays in and out (tuples as tuples).

    For deterministic methods of a trained model (``encode``, ``decode``, ``classify``,
    ``analogies``).
    """
    out = method(*(_device(a) for a in args), **{k: _device(v) for k, v in kwargs.items()})
    return _numpy(out)


def draw(method: Callable, *args: Any, seed: int, **kwargs: Any) -> Any:
    """:func:`compute` for a method that draws (``sample``, ``reconstruct``):
    ``method(jax.random.PRNGKey(seed), *args, **kwargs)``.

    The Pyro twin runs the method on torch's generator seeded with ``seed``.
    """
    return compute(method, jax.random.PRNGKey(int(seed)), *args, **kwargs)
