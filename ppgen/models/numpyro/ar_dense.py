"""Pieces shared by the dense autoregressive models (FVSBN, NADE, MADE as a density).

A dense model's event is a vector ``(D,)`` generated one entry at a time in the net's
``order`` (``order[k]`` = the entry drawn ``k``-th). :func:`sample_in_order` is the one
sampling loop (a ``lax.fori_loop``, so it jits without unrolling ``D`` steps): each step asks
the model for the parameters of the next entry (from the entries drawn so far, and a
carried state for the cached samplers) and draws it with the head, ``x_i =
head.draw(params_i, noise[..., i, ...])``, so the naive and the cached sampler of a model
differ only in how they compute the parameters. :func:`observe` is one site of the
plated-conditional form. Mirrors ``ppgen.models.pyro.ar_dense``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpyro
from jax import lax

from ppgen.errors import DataError
from ppgen.models.ar_dense import check_prefix_count

__all__ = ["check_prefix", "observe", "sample_in_order"]


def check_prefix(
    prefix: tuple[jax.Array, int] | None, batch_shape: Sequence[int], dim: int
) -> tuple[jax.Array | None, int]:
    """Check a completion prefix ``(x_given (*batch, D), count)``; return it.

    The first ``count`` entries in the model's order are copied from ``x_given`` instead of
    drawn (its other entries are ignored).

    Raises:
        DataError: ``x_given`` not of shape ``(*batch, D)`` (broadcastable to the noise's
            batch), or ``count`` not an integer in ``[0, D]``.
    """
    if prefix is None:
        return None, 0
    given, count = prefix[0], check_prefix_count(prefix, dim)
    given = jnp.asarray(given)
    try:
        given = jnp.broadcast_to(given, (*batch_shape, dim))
    except ValueError:
        raise DataError(
            f"prefix values must have shape (*batch, {dim}) with batch {tuple(batch_shape)}, "
            f"got {tuple(given.shape)}"
        ) from None
    return given, count


def sample_in_order(
    order: Sequence[int],
    noise: jax.Array,
    head: Any,
    params_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
    update_fn: Callable[[Any, jax.Array, jax.Array], Any] | None = None,
    carry: Any = None,
    prefix: tuple[jax.Array, int] | None = None,
    dtype: Any = None,
    name: str = "model",
) -> jax.Array:
    """Draw ``x (*batch, D)`` one entry at a time in ``order`` (a ``lax.fori_loop``).

    Step ``k`` draws entry ``i = order[k]`` (a traced index): ``params = params_fn(carry,
    x, i)`` (``x`` holds the entries drawn so far, zero elsewhere), ``x_i =
    head.draw(params, noise[..., i, ...])`` (or the prefix's value), then ``carry =
    update_fn(carry, i, x_i)``. Deterministic given the noise.

    Args:
        order: The entries in sampling order, a permutation of ``range(D)``.
        noise: ``(*batch, D, *head.noise_shape)``, from ``head.noise``.
        head: The conditional family.
        params_fn: ``(carry, x, i) -> params (*batch, num_params)``.
        update_fn: ``(carry, i, x_i (*batch,)) -> carry`` (``None``: no carried state).
        carry: The initial carried state (a pytree).
        prefix: ``(x_given (*batch, D), count)``: the first ``count`` entries in ``order``
            are taken from ``x_given`` (completion), see :func:`check_prefix`.
        dtype: The float dtype of the ``x`` the model reads (default: JAX's default float).
        name: The model's name, for messages.

    Returns:
        ``x (*batch, D)`` with the head's value type (floats 0/1 for Bernoulli, int32 codes
        for categorical heads).

    Raises:
        DataError: Noise of the wrong shape, or a bad prefix.
    """
    dim = len(order)
    event = (dim, *tuple(head.noise_shape))
    noise = jnp.asarray(noise)
    if noise.ndim < len(event) or tuple(noise.shape[noise.ndim - len(event) :]) != event:
        raise DataError(
            f"{name} needs noise of shape (*batch, {', '.join(map(str, event))}) "
            f"(head.noise(key, (*batch, {dim}))), got {tuple(noise.shape)}"
        )
    axis = noise.ndim - len(event)
    batch = tuple(noise.shape[:axis])
    given, count = check_prefix(prefix, batch, dim)
    dtype = dtype or jnp.result_type(float)
    x0 = jnp.zeros((*batch, dim), dtype)
    order_arr = jnp.asarray(order, dtype=jnp.int32)
    # The head's value type (float for Bernoulli, int for categorical heads).
    params0 = jax.eval_shape(lambda: params_fn(carry, x0, order_arr[0]))
    value = jax.eval_shape(
        head.draw,
        params0,
        jax.ShapeDtypeStruct(noise.shape[:axis] + noise.shape[axis + 1 :], noise.dtype),
    )

    def body(k, state):
        x, c = state
        i = order_arr[k]
        params = params_fn(c, x, i)
        xi = head.draw(params, jnp.take(noise, i, axis=axis)).astype(dtype)
        if given is not None:
            xi = jnp.where(k < count, given[..., i].astype(dtype), xi)
        x = x.at[..., i].set(xi)
        if update_fn is not None:
            c = update_fn(c, i, xi)
        return x, c

    x, _ = lax.fori_loop(0, dim, body, (x0, carry))
    return x.astype(value.dtype)


def observe(i: int, head: Any, params: jax.Array, x: jax.Array | None) -> jax.Array:
    """The sample site ``x_{i}``: ``head.distribution(params)`` observed at ``x[..., i]``
    (sampled when ``x`` is ``None``); returns its value ``(*batch,)``."""
    obs = None if x is None else x[..., i]
    return numpyro.sample(f"x_{i}", head.distribution(params), obs=obs)
