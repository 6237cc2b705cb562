"""Pieces shared by the dense autoregressive models (FVSBN, NADE, MADE as a density).

A dense model's event is a vector ``(D,)`` generated one entry at a time in the net's
``order`` (``order[k]`` = the entry drawn ``k``-th). :func:`sample_in_order` is their one
sampler: the naive one is the base's :func:`ppgen.models.numpyro.ar.naive_sample` (a full
pass per entry); a cached one is given as a ``step``, which asks the model for the
parameters of the next entry from a carried state, so the two differ only in how they
compute those parameters. Both are one ``lax.fori_loop`` (they jit without unrolling ``D``
steps). :func:`observe` is one site of the plated-conditional form. Mirrors
``ppgen.models.pyro.ar_dense``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from jax import lax

from ppgen.errors import DataError
from ppgen.models.ar_dense import check_prefix_count
from ppgen.models.numpyro.ar import Bernoulli, naive_sample

__all__ = ["check_prefix", "observe", "sample_in_order"]

# A cached sampler's step: (params_fn(carry, x, i) -> params (*batch, num_params),
# update_fn(carry, i, x_i (*batch,)) -> carry, the initial carry); ``i`` is traced.
Step = tuple[Callable[[Any, jax.Array, jax.Array], jax.Array], Callable[..., Any], Any]


def check_prefix(
    prefix: tuple[jax.Array, int] | None, batch_shape: tuple[int, ...], dim: int
) -> tuple[jax.Array | None, int]:
    """Check a completion prefix ``(x_given (*batch, D), count)``; return it.

    The first ``count`` entries in the model's order are copied from ``x_given`` instead of
    drawn (its other entries are ignored); ``x_given`` broadcasts to the noise's batch.

    Raises:
        DataError: ``x_given`` not broadcastable to ``(*batch, D)``, or ``count`` not an
            integer in ``[0, D]``.
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
    net: Any,
    noise: jax.Array,
    head: Any,
    context: Any = None,
    prefix: tuple[jax.Array, int] | None = None,
    step: Step | None = None,
) -> jax.Array:
    """Draw ``x (*batch, D)`` from ``net`` one entry at a time in ``net.order``.

    Without ``step``, the naive sampler (:func:`ppgen.models.numpyro.ar.naive_sample`).
    With ``step = (params_fn, update_fn, carry)``, the cached one: entry ``i = order[k]``
    (a traced index) gets ``params = params_fn(carry, x, i)`` (``x`` holds the entries drawn
    so far, zero elsewhere), ``x_i = head.draw(params, noise[..., i, ...])`` (or the
    prefix's value), then ``carry = update_fn(carry, i, x_i)``. Both are deterministic
    given the noise.

    Args:
        net: A dense network of the protocol (``event_shape == (D,)``, ``order``).
        noise: ``(*batch, D, *head.noise_shape)`` uniforms.
        head: The conditional family.
        context: The network's context, or ``None``.
        prefix: ``(x_given (*batch, D), count)``: the first ``count`` entries in ``order``
            are taken from ``x_given`` (completion), see :func:`check_prefix`.
        step: The cached sampler's step, or ``None`` for the naive sampler.

    Returns:
        ``x (*batch, D)``: floats 0/1 for a Bernoulli head, int32 codes otherwise.

    Raises:
        DataError: Noise of the wrong shape, or a bad prefix.
    """
    dim = net.event_shape[0]
    event = (dim, *tuple(head.noise_shape))
    noise = jnp.asarray(noise)
    axis = noise.ndim - len(event)
    if axis < 0 or tuple(noise.shape[axis:]) != event:
        raise DataError(
            f"{type(net).__name__} needs noise of shape (*batch, {', '.join(map(str, event))}), "
            f"got {tuple(noise.shape)}"
        )
    batch = tuple(noise.shape[:axis])
    given, count = check_prefix(prefix, batch, dim)
    if step is None:
        return naive_sample(net, noise, head, context, start=count, x=given)
    params_fn, update_fn, carry = step
    dtype = noise.dtype if isinstance(head, Bernoulli) else jnp.int32
    order = jnp.asarray(np.asarray(net.order, dtype=np.int32))

    def body(k, state):
        x, c = state
        i = order[k]
        xi = head.draw(params_fn(c, x, i), jnp.take(noise, i, axis=axis)).astype(x.dtype)
        if given is not None:
            xi = jnp.where(k < count, given[..., i].astype(x.dtype), xi)
        return x.at[..., i].set(xi), update_fn(c, i, xi)

    x, _ = lax.fori_loop(0, dim, body, (jnp.zeros((*batch, dim), noise.dtype), carry))
    return x.astype(dtype)


def observe(i: int, head: Any, params: jax.Array, x: jax.Array | None) -> jax.Array:
    """The sample site ``x_{i}``: ``head.distribution(params)`` observed at ``x[..., i]``
    (sampled when ``x`` is ``None``); returns its value ``(*batch,)``."""
    obs = None if x is None else x[..., i]
    return numpyro.sample(f"x_{i}", head.distribution(params), obs=obs)
