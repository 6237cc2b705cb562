"""Pieces shared by the dense autoregressive models (FVSBN, NADE, MADE as a density).

A dense model's event is a vector ``(D,)`` generated one entry at a time in the net's
``order`` (``order[k]`` = the entry drawn ``k``-th). :func:`sample_in_order` is their one
sampler: the naive one is the base's :func:`ppgen.models.pyro.ar.naive_sample` (a full pass
per entry); a cached one is given as a ``step``, which asks the model for the parameters of
the next entry from a carried state, so the two differ only in how they compute those
parameters. :func:`observe` is one site of the plated-conditional form. Mirrors
``ppgen.models.numpyro.ar_dense``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import torch

from ppgen.errors import DataError
from ppgen.models.ar_dense import check_prefix_count
from ppgen.models.pyro.ar import Bernoulli, naive_sample

__all__ = ["check_prefix", "observe", "sample_in_order"]

# A cached sampler's step: (params_fn(carry, x, i) -> params (*batch, num_params),
# update_fn(carry, i, x_i (*batch,)) -> carry, the initial carry).
Step = tuple[Callable[[Any, torch.Tensor, int], torch.Tensor], Callable[..., Any], Any]


def check_prefix(
    prefix: tuple[torch.Tensor, int] | None, batch_shape: tuple[int, ...], dim: int
) -> tuple[torch.Tensor | None, int]:
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
    given = torch.as_tensor(given)
    try:
        given = given.expand(*batch_shape, dim)
    except RuntimeError:
        raise DataError(
            f"prefix values must have shape (*batch, {dim}) with batch {tuple(batch_shape)}, "
            f"got {tuple(given.shape)}"
        ) from None
    return given, count


@torch.no_grad()
def sample_in_order(
    net: Any,
    noise: torch.Tensor,
    head: Any,
    context: Any = None,
    prefix: tuple[torch.Tensor, int] | None = None,
    step: Step | None = None,
) -> torch.Tensor:
    """Draw ``x (*batch, D)`` from ``net`` one entry at a time in ``net.order``.

    Without ``step``, the naive sampler (:func:`ppgen.models.pyro.ar.naive_sample`). With
    ``step = (params_fn, update_fn, carry)``, the cached one: entry ``i = order[k]`` gets
    ``params = params_fn(carry, x, i)`` (``x`` holds the entries drawn so far, zero
    elsewhere), ``x_i = head.draw(params, noise[..., i, ...])`` (or the prefix's value), then
    ``carry = update_fn(carry, i, x_i)``. Both are deterministic given the noise.

    Args:
        net: A dense network of the protocol (``event_shape == (D,)``, ``order``).
        noise: ``(*batch, D, *head.noise_shape)`` uniforms.
        head: The conditional family.
        context: The network's context, or ``None``.
        prefix: ``(x_given (*batch, D), count)``: the first ``count`` entries in ``order``
            are taken from ``x_given`` (completion), see :func:`check_prefix`.
        step: The cached sampler's step, or ``None`` for the naive sampler.

    Returns:
        ``x (*batch, D)``: floats 0/1 for a Bernoulli head, int64 codes otherwise.

    Raises:
        DataError: Noise of the wrong shape, or a bad prefix.
    """
    dim = net.event_shape[0]
    event = (dim, *tuple(head.noise_shape))
    noise = torch.as_tensor(noise)
    axis = noise.dim() - len(event)
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
    dtype = noise.dtype if isinstance(head, Bernoulli) else torch.long
    x = torch.zeros(*batch, dim, dtype=noise.dtype, device=noise.device)
    for k, i in enumerate(net.order):
        params = params_fn(carry, x, i)
        xi = given[..., i] if k < count else head.draw(params, noise.select(axis, i))
        x[..., i] = xi.to(x.dtype)
        carry = update_fn(carry, i, x[..., i])
    return x.to(dtype)


def observe(i: int, head: Any, params: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """The sample site ``x_{i}``: ``head.distribution(params)`` observed at ``x[..., i]``
    (sampled when ``x`` is ``None``); returns its value ``(*batch,)``."""
    obs = None if x is None else x[..., i]
    return pyro.sample(f"x_{i}", head.distribution(params), obs=obs)
