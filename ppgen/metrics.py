"""Metrics on numpy arrays, shared by both backends."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["active_units", "bits_per_dim", "logmeanexp", "posterior_gap", "summarize_nll"]


def active_units(posterior_means: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Which latent units a VAE uses (Burda et al. 2015): unit ``u`` is active when
    ``Cov_x(E_q[z_u | x]) > threshold``, its posterior mean varying across the data.

    ``posterior_means`` is ``(N, latent)``, e.g. ``E_q[z | x]`` over a training set; the
    result is a boolean mask of length ``latent``. An inactive unit's posterior is the prior
    whatever ``x`` is, so it carries no information about ``x``.
    """
    means = np.asarray(posterior_means, dtype=np.float64)
    if means.ndim != 2 or len(means) < 2:
        raise ValueError(f"posterior_means must be (N >= 2, latent), got shape {means.shape}")
    if not np.all(np.isfinite(means)):
        raise ValueError("posterior_means contains NaN or Inf")
    return means.var(axis=0) > threshold


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


def posterior_gap(idata, approx: dict[str, np.ndarray]) -> dict[str, float]:
    """How far approximate posterior draws are from MCMC draws, per latent dimension.

    Args:
        idata: ``arviz.InferenceData`` whose ``posterior`` holds the MCMC draws.
        approx: Draws of an approximation (e.g. an amortized guide) by site name, each
            (num_draws, *site_shape).

    Returns:
        ``max_abs_mean_diff`` and ``mean_abs_mean_diff`` (|E_mcmc z - E_q z|),
        ``mean_std_ratio`` (mean of std_q / std_mcmc), and the MCMC diagnostics
        ``max_r_hat``, ``min_ess_bulk``, ``min_ess_tail`` from ``arviz.summary``.

    Raises:
        ConfigError: The two share no latent site.
    """
    import arviz as az

    from ppgen.errors import ConfigError

    names = [name for name in approx if name in idata.posterior]
    if not names:
        raise ConfigError("the guide and the MCMC posterior share no latent site to compare")
    mean_diff, std_ratio = [], []
    for name in names:
        draws = np.asarray(approx[name], dtype=np.float64)
        exact = idata.posterior[name].values.reshape(-1, *draws.shape[1:])  # (chains*draws, ...)
        mean_diff.append(np.abs(exact.mean(0) - draws.mean(0)).ravel())
        std_ratio.append((draws.std(0) / exact.std(0)).ravel())
    with np.errstate(divide="ignore", invalid="ignore"):  # r_hat of a stuck chain is inf/nan
        summary = az.summary(idata, var_names=names, kind="diagnostics")
    mean_diff, std_ratio = np.concatenate(mean_diff), np.concatenate(std_ratio)
    return {
        "max_abs_mean_diff": float(mean_diff.max()),
        "mean_abs_mean_diff": float(mean_diff.mean()),
        "mean_std_ratio": float(std_ratio.mean()),
        "max_r_hat": float(summary["r_hat"].max()),
        "min_ess_bulk": float(summary["ess_bulk"].min()),
        "min_ess_tail": float(summary["ess_tail"].min()),
    }
