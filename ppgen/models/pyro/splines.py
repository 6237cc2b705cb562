"""Monotone rational-quadratic splines with linear tails (Durkan et al. 2019), in torch.

On ``[-B, B]`` the map is ``K`` rational-quadratic pieces through the knots
``(x_k, y_k)`` with derivatives ``d_k`` there (Gregory & Delbourgo 1982); outside it is the
identity, and the boundary derivatives are 1 so the map is continuously differentiable. The
inverse solves each piece's quadratic by the root formula that does not cancel
(``xi = 2c / (-b - sqrt(b^2 - 4ac))``, the form of the paper's appendix). Mirrors
``ppgen.models.numpyro.splines``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ppgen.models.elementwise import (
    DERIVATIVE_SHIFT,
    MIN_BIN_HEIGHT,
    MIN_BIN_WIDTH,
    MIN_DERIVATIVE,
)

__all__ = ["rational_quadratic_spline", "spline_knots"]


def spline_knots(
    raw: torch.Tensor, bins: int, bound: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    one = torch.ones_like(raw[..., :1])
    derivatives = torch.cat(
        [one, MIN_DERIVATIVE + F.softplus(d_raw + DERIVATIVE_SHIFT), one], dim=-1
    )
    return x_knots, y_knots, derivatives


def _knots(raw: torch.Tensor, minimum: float, bound: float) -> torch.Tensor:
    bins = raw.shape[-1]
    sizes = minimum + (1 - minimum * bins) * torch.softmax(raw, dim=-1)  # (..., K), sum 1
    inner = torch.cumsum(sizes, dim=-1)[..., :-1]  # (..., K - 1)
    lo, hi = torch.zeros_like(raw[..., :1]), torch.ones_like(raw[..., :1])
    return bound * (2 * torch.cat([lo, inner, hi], dim=-1) - 1)


def rational_quadratic_spline(
    inputs: torch.Tensor, raw: torch.Tensor, bins: int, bound: float, inverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
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
    z = inputs.clamp(-bound, bound)
    src = y_knots if inverse else x_knots
    idx = (z[..., None] >= src[..., 1:-1]).sum(dim=-1, keepdim=True)  # (..., 1) in [0, K)

    def at(t: torch.Tensor, shift: int = 0) -> torch.Tensor:
        return torch.gather(t, -1, idx + shift)[..., 0]

    x0, x1, y0, y1 = at(x_knots), at(x_knots, 1), at(y_knots), at(y_knots, 1)
    d0, d1 = at(derivatives), at(derivatives, 1)
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        dy = z - y0
        curve = d1 + d0 - 2 * s
        a = h * (s - d0) + dy * curve
        b = h * d0 - dy * curve
        c = -s * dy
        disc = (b * b - 4 * a * c).clamp_min(0)
        xi = (2 * c / (-b - torch.sqrt(disc))).clamp(0, 1)
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
    ladj = torch.log(numerator) - 2 * torch.log(denominator)
    return torch.where(inside, out, inputs), torch.where(inside, ladj, torch.zeros_like(ladj))
