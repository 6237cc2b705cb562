"""Pieces shared by the dense autoregressive models (FVSBN, NADE, MADE as a density).

A dense model's event is a vector ``(D,)`` generated one entry at a time in the net's
``order`` (``order[k]`` = the entry drawn ``k``-th). :func:`sample_in_order` is the one
sampling loop: each step asks the model for the parameters of the next entry (from the
entries drawn so far, and a carried state for the cached samplers) and draws it with the
head, ``x_i = head.draw(params_i, noise[..., i, ...])``, so the naive and the cached sampler
of a model differ only in how they compute the parameters. :func:`observe` is one site of
the plated-conditional form. Mirrors ``ppgen.models.numpyro.ar_dense``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import torch

from ppgen.errors import DataError
from ppgen.models.ar_dense import check_prefix_count

__all__ = ["check_prefix", "observe", "sample_in_order"]


def check_prefix(
    prefix: tuple[torch.Tensor, int] | None, batch_shape: Sequence[int], dim: int
) -> tuple[torch.Tensor | None, int]:
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
    order: Sequence[int],
    noise: torch.Tensor,
    head: Any,
    params_fn: Callable[[Any, torch.Tensor, int], torch.Tensor],
    update_fn: Callable[[Any, int, torch.Tensor], Any] | None = None,
    carry: Any = None,
    prefix: tuple[torch.Tensor, int] | None = None,
    dtype: torch.dtype | None = None,
    name: str = "model",
) -> torch.Tensor:
    """Draw ``x (*batch, D)`` one entry at a time in ``order``.

    Step ``k`` draws entry ``i = order[k]``: ``params = params_fn(carry, x, i)`` (``x``
    holds the entries drawn so far, zero elsewhere), ``x_i = head.draw(params,
    noise[..., i, ...])`` (or the prefix's value), then ``carry = update_fn(carry, i,
    x_i)``. Deterministic given the noise.

    Args:
        order: The entries in sampling order, a permutation of ``range(D)``.
        noise: ``(*batch, D, *head.noise_shape)``, from ``head.noise``.
        head: The conditional family.
        params_fn: ``(carry, x, i) -> params (*batch, num_params)``.
        update_fn: ``(carry, i, x_i (*batch,)) -> carry`` (``None``: no carried state).
        carry: The initial carried state.
        prefix: ``(x_given (*batch, D), count)``: the first ``count`` entries in ``order``
            are taken from ``x_given`` (completion), see :func:`check_prefix`.
        dtype: The float dtype of the ``x`` the model reads (default: torch's default).
        name: The model's name, for messages.

    Returns:
        ``x (*batch, D)`` with the head's value type (floats 0/1 for Bernoulli, int64 codes
        for categorical heads).

    Raises:
        DataError: Noise of the wrong shape, or a bad prefix.
    """
    dim = len(order)
    event = (dim, *tuple(head.noise_shape))
    noise = torch.as_tensor(noise)
    if noise.dim() < len(event) or tuple(noise.shape[noise.dim() - len(event) :]) != event:
        raise DataError(
            f"{name} needs noise of shape (*batch, {', '.join(map(str, event))}) "
            f"(head.noise(key, (*batch, {dim}))), got {tuple(noise.shape)}"
        )
    batch = tuple(noise.shape[: noise.dim() - len(event)])
    given, count = check_prefix(prefix, batch, dim)
    x = torch.zeros(*batch, dim, dtype=dtype or torch.get_default_dtype(), device=noise.device)
    axis = noise.dim() - len(event)
    draws = []
    for k, i in enumerate(order):
        params = params_fn(carry, x, i)
        if k < count:
            xi = given[..., i]
        else:
            xi = head.draw(params, noise.select(axis, i))
        draws.append(xi)
        x[..., i] = xi.to(x.dtype)
        if update_fn is not None:
            carry = update_fn(carry, i, x[..., i])
    value_dtype = draws[-1].dtype if count < dim else given.dtype
    return x.to(value_dtype) if not value_dtype.is_floating_point else x


def observe(i: int, head: Any, params: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
    """The sample site ``x_{i}``: ``head.distribution(params)`` observed at ``x[..., i]``
    (sampled when ``x`` is ``None``); returns its value ``(*batch,)``."""
    obs = None if x is None else x[..., i]
    return pyro.sample(f"x_{i}", head.distribution(params), obs=obs)
