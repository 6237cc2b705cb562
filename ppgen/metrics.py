"""Metrics on numpy arrays, shared by both backends."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bits_per_dim", "logmeanexp", "summarize_nll"]


def bits_per_dim(nll_nats: float | np.ndarray, dim: int) -> float | np.ndarray:
    """Convert a negative log-likelihood per example in nats to bits per dimension.

    ``bits/dim = nll / (dim * ln 2)``.
    """
    if dim <= 0:
        raise ValueError(f"dim must be positive, got {dim}")
    return nll_nats / (dim * math.log(2.0))


def logmeanexp(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """``log(mean(exp(a), axis))`` computed stably."""
    a = np.asarray(a, dtype=np.float64)
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out = np.log(np.mean(np.exp(a - m), axis=axis, keepdims=True)) + m
    return np.squeeze(out, axis=axis)


def summarize_nll(log_px: np.ndarray, dim: int) -> dict[str, float]:
    """Test-set summary of per-example ``log p(x)`` estimates (nats).

    Returns the mean NLL, its standard error, and bits/dim.
    """
    log_px = np.asarray(log_px, dtype=np.float64)
    nll = -log_px
    return {
        "nll": float(nll.mean()),
        "nll_stderr": float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else 0.0,
        "bits_per_dim": float(bits_per_dim(nll.mean(), dim)),
        "n": len(nll),
    }
