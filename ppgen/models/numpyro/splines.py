"""Monotone rational-quadratic splines with linear tails (Durkan et al. 2019), in JAX.

On ``[-B, B]`` the map is ``K`` rational-quadratic pieces through the knots
``(x_k, y_k)`` with derivatives ``d_k`` there (Gregory & Delbourgo 1982); outside it is the
identity, and the boundary derivatives are 1 so the map is continuously differentiable. The
inverse solves each piece's quadratic by the root formula that does not cancel
(``xi = 2c / (-b - sqrt(b^2 - 4ac))``, the form of the paper's appendix). Mirrors
``ppgen.models.pyro.splines``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ppgen.models.elementwise import (
    DERIVATIVE_SHIFT,
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    MIN_DERIVATIVE,
)

__all__ = ["rational_quadratic_spline", "spline_knots"]


def spline_knots(raw: jax.Array, bins: int, bound: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Knots of the spline from unconstrained parameters.

    ``raw`` is ``[widths K | heights K | interior derivatives K - 1]``; the bin widths are
    ``MIN_BIN_WIDTH + (1 - K MIN_BIN_WIDTH) softmax(raw widths)`` of ``2 B`` (heights
    alike), the interior derivatives ``MIN_DERIVATIVE + softplus(raw + DERIVATIVE_SHIFT)`` (1 at
    ``raw = 0``), the two boundary
    derivatives 1.

    Args:
        raw: ``(..., 3K - 1)``.
        bins: ``K``.
        bound: ``B``.

    Returns:
        ``(x_knots, y_knots, derivatives)``, each ``(..., K + 1)``, the knots running from
        exactly ``-B`` to exactly ``B``.
    """
    w_raw, h_raw, d_raw = raw[..., :bins], raw[..., bins : 2 * bins], raw[..., 2 * bins :]
    x_knots = _knots(w_raw, MIN_BIN_WIDTH, bound)
    y_knots = _knots(h_raw, MIN_BIN_HEIGHT, bound)
    one = jnp.ones_like(raw[..., :1])
    derivatives = jnp.concatenate(
        [one, MIN_DERIVATIVE + jax.nn.softplus(d_raw + DERIVATIVE_SHIFT), one], axis=-1
    )
    return x_knots, y_knots, derivatives


def _knots(raw: jax.Array, minimum: float, bound: float) -> jax.Array:
    bins = raw.shape[-1]
    sizes = minimum + (1 - minimum * bins) * jax.nn.softmax(raw, axis=-1)  # (..., K), sum 1
    inner = jnp.cumsum(sizes, axis=-1)[..., :-1]  # (..., K - 1)
    lo, hi = jnp.zeros_like(raw[..., :1]), jnp.ones_like(raw[..., :1])
    return bound * (2 * jnp.concatenate([lo, inner, hi], axis=-1) - 1)


def rational_quadratic_spline(
    inputs: jax.Array, raw: jax.Array, bins: int, bound: float, inverse: bool = False
) -> tuple[jax.Array, jax.Array]:
    """The spline ``y = g(x)`` (or its inverse) and ``log g'(x)``, element by element.

    Args:
        inputs: ``x`` (or ``y`` when ``inverse``), any shape ``(...)``.
        raw: Unconstrained parameters ``(..., 3K - 1)`` (see :func:`spline_knots`).
        bins: ``K``.
        bound: ``B``; outside ``[-B, B]`` the map is the identity.
        inverse: Compute ``x = g^{-1}(y)`` instead.

    Returns:
        ``(outputs, ladj)``, both of ``inputs``' shape; ``ladj = log g'(x)`` is the forward
        map's log-derivative (nats), also when ``inverse``.
    """
    x_knots, y_knots, derivatives = spline_knots(raw, bins, bound)
    inside = (inputs >= -bound) & (inputs <= bound)
    # Evaluate on the clamped input so the discarded branch stays finite (no NaN gradients).
    z = jnp.clip(inputs, -bound, bound)
    src = y_knots if inverse else x_knots
    bins_range = jnp.arange(bins)
    # The bin of each input, as a one-hot mask: selecting by it compiles to a few
    # element-wise ops where take_along_axis builds a gather.
    idx = jnp.sum(z[..., None] >= src[..., 1:-1], axis=-1, keepdims=True)  # (..., 1) in [0, K)
    onehot = idx == bins_range  # (..., K)

    def lo(t: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(onehot, t[..., :-1], 0.0), axis=-1)

    def hi(t: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(onehot, t[..., 1:], 0.0), axis=-1)

    x0, x1, y0, y1 = lo(x_knots), hi(x_knots), lo(y_knots), hi(y_knots)
    d0, d1 = lo(derivatives), hi(derivatives)
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        dy = z - y0
        curve = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * curve
        b = h * d0 - dy * curve
        c = -s * dy
        disc = jnp.maximum(b * b - 4 * a * c, 0)
        xi = jnp.clip(2 * c / (-b - jnp.sqrt(disc)), 0, 1)
        out = x0 + xi * w
    else:
        xi = (z - x0) / w
        one_minus = 1 - xi
        out = y0 + h * (s * xi * xi + d0 * xi * one_minus) / (
            s + (d1 + d0 - 2 * s) * xi * one_minus
        )
    one_minus = 1 - xi
    between = xi * one_minus
    denominator = s + (d1 + d0 - 2 * s) * between
    numerator = s * s * (d1 * xi * xi + 2 * s * between + d0 * one_minus * one_minus)
    ladj = jnp.log(numerator) - 2 * jnp.log(denominator)
    return jnp.where(inside, out, inputs), jnp.where(inside, ladj, jnp.zeros_like(ladj))
