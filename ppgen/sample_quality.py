"""Sample-quality metrics for models without a likelihood (GANs), on numpy arrays.

Mode coverage on the toy sets of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al.,
2018); the Fréchet distance of Gaussian fits to features (FID, Heusel et al., 2017); the
kernel inception distance (KID, Binkowski et al., 2018); the class histogram of Stacked MNIST
(mode count and KL to uniform, VEEGAN/PacGAN) and the inception score (Salimans et al., 2016),
all computed on features or class probabilities from any network, e.g. ppgen's MNIST
classifier (`ppgen.classifier`).

Written in numpy and scipy (which scikit-learn already brings), not with torchmetrics: its
FID and KID accept a custom feature extractor but are torch modules on torch tensors and a new
dependency, while these take features from either backend as numpy arrays. The formulas are
those of torchmetrics and mseitzer/pytorch-fid; the tests check them against closed forms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import xlogy

from ppgen.data.toy import toy_modes
from ppgen.errors import ConfigError, DataError

__all__ = [
    "PACGAN_MIN_COUNT",
    "QUALITY_RADIUS",
    "class_histogram_stats",
    "frechet_distance",
    "high_quality_share",
    "inception_score",
    "kernel_inception_distance",
    "mode_metrics",
    "modes_covered",
]

QUALITY_RADIUS = 3.0
"""A sample is of high quality if it lies within this many standard deviations of its
nearest mode (VEEGAN; PacGAN). For a sample of an isotropic 2-D Gaussian mode this happens
with probability ``1 - exp(-3**2 / 2) = 0.98889`` (the chi distribution with 2 degrees of
freedom)."""

PACGAN_MIN_COUNT = 20
"""High-quality samples a mode needs to count as captured: PacGAN (Lin et al., 2018,
Section 5.1) counts a mode as lost when fewer than 20 of 2,500 generated samples lie within 3
standard deviations of its centre."""


def _check_int(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
        raise ConfigError(f"{name} must be an integer of at least {least}, got {value!r}")
    return int(value)


def _check_points(x: Any, name: str, *, dim: int | None = None, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 ``(n, d)`` array with at least ``min_rows`` rows."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (ValueError, TypeError) as err:
        raise DataError(f"{name} is not a numeric array ({err}); pass an (n, d) array") from err
    if x.ndim != 2:
        raise DataError(f"{name} must be an (n, d) array, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise DataError(f"{name} has {x.shape[1]} features per row but {dim} are expected")
    if len(x) < min_rows:
        raise DataError(f"{name} has {len(x)} rows; at least {min_rows} are needed")
    if not np.isfinite(x).all():
        raise DataError(f"{name} contains NaN or Inf; drop those rows first")
    return x


def _assign(samples: Any, centers: Any, std: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Nearest mode of each sample, whether it is of high quality, and the number of modes."""
    centers = _check_points(centers, "centers")
    samples = _check_points(samples, "samples", dim=centers.shape[1])
    if not (isinstance(std, int | float | np.floating) and np.isfinite(std) and std > 0):
        raise ConfigError(f"std must be a positive number, got {std!r}")
    # (n, K) squared distances; K is small (8 or 25), so this fits for millions of samples.
    d2 = ((samples[:, None, :] - centers[None, :, :]) ** 2).sum(-1)
    nearest = d2.argmin(axis=1)
    good = d2[np.arange(len(samples)), nearest] <= (QUALITY_RADIUS * std) ** 2
    return nearest, good, len(centers)


def modes_covered(
    samples: Any, centers: Any, std: float, *, min_count: int = PACGAN_MIN_COUNT
) -> int:
    """The number of modes that receive at least ``min_count`` high-quality samples.

    A sample is of high quality if it lies within `QUALITY_RADIUS` (3) standard deviations of
    its nearest mode, and then belongs to that mode (VEEGAN, Srivastava et al., 2017; PacGAN,
    Lin et al., 2018). PacGAN draws 2,500 samples and calls a mode lost below 20 of them (the
    default); scale ``min_count`` with the number of samples when drawing another number.

    Args:
        samples: ``(n, d)`` generated points.
        centers: ``(K, d)`` mode centres.
        std: the standard deviation of every (isotropic) mode, in the units of ``samples``.
        min_count: high-quality samples a mode needs to count as covered (at least 1).

    Returns:
        The number of covered modes, between 0 and K.

    Raises:
        DataError: arrays that are not 2-D, differ in ``d``, are empty or hold NaN/Inf.
        ConfigError: ``std`` not positive or ``min_count`` below 1.
    """
    min_count = _check_int(min_count, "min_count", 1)
    nearest, good, k = _assign(samples, centers, std)
    return int((np.bincount(nearest[good], minlength=k) >= min_count).sum())


def high_quality_share(samples: Any, centers: Any, std: float) -> float:
    """The fraction of samples within 3 standard deviations of their nearest mode (VEEGAN's
    "high quality samples", Srivastava et al., 2017). About 0.989 for samples of the mixture
    itself in 2-D (see `QUALITY_RADIUS`).

    Args:
        samples: ``(n, d)`` generated points.
        centers: ``(K, d)`` mode centres.
        std: the standard deviation of every (isotropic) mode, in the units of ``samples``.

    Returns:
        A share in [0, 1].

    Raises:
        DataError: arrays that are not 2-D, differ in ``d``, are empty or hold NaN/Inf.
        ConfigError: ``std`` not positive.
    """
    _, good, _ = _assign(samples, centers, std)
    return float(good.mean())


def mode_metrics(samples: Any, name: str, *, min_count: int = PACGAN_MIN_COUNT) -> dict:
    """VEEGAN/PacGAN's mode metrics of samples against the toy set ``name``.

    Args:
        samples: ``(n, 2)`` generated points (PacGAN's protocol draws 2,500).
        name: ``"ring8"`` or ``"grid25"`` (see `ppgen.data.toy.toy_modes`).
        min_count: as in `modes_covered`.

    Returns:
        ``{"modes": covered modes, "num_modes": K, "hq_share": share of high-quality
        samples}``.

    Raises:
        ConfigError: a toy set without listed modes, or bad ``min_count``.
        DataError: as `modes_covered`.
    """
    centers, std = toy_modes(name)
    return {
        "modes": modes_covered(samples, centers, std, min_count=min_count),
        "num_modes": len(centers),
        "hq_share": high_quality_share(samples, centers, std),
    }


def _gaussian_fit(x: Any, name: str, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    x = _check_points(x, name, dim=dim, min_rows=2)
    n, d = x.shape
    if n <= d:
        raise DataError(
            f"{name} has {n} samples of {d} features: its covariance is singular; the Fréchet "
            f"distance needs at least {d + 1} samples (use thousands)"
        )
    # Unbiased covariance, as pytorch-fid; (d, d) even for d = 1.
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(features_a: Any, features_b: Any) -> float:
    """The Fréchet distance of Gaussian fits to two feature sets (FID when the features are
    Inception's; Heusel et al., 2017, "GANs Trained by a Two Time-Scale Update Rule Converge
    to a Local Nash Equilibrium"):

        ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}),

    with the sample means and unbiased covariances. ``Tr (S_a S_b)^{1/2}`` is the sum of the
    square roots of the eigenvalues of ``S_a^{1/2} S_b S_a^{1/2}`` (the same as those of
    ``S_a S_b``), computed by symmetric eigen-decompositions (``numpy.linalg.eigh``). This
    equals the real part of ``scipy.linalg.sqrtm(S_a @ S_b)`` that pytorch-fid takes, without
    its complex round-off or its failure on singular products.

    Args:
        features_a: ``(n_a, d)`` features, float64 internally.
        features_b: ``(n_b, d)`` features.

    Returns:
        The distance (squared units of the features), >= 0 up to round-off.

    Raises:
        DataError: arrays that are not 2-D, differ in ``d``, hold NaN/Inf, or have no more
            samples than features (a singular covariance; the message says how many).
    """
    mu_a, s_a = _gaussian_fit(features_a, "features_a", None)
    mu_b, s_b = _gaussian_fit(features_b, "features_b", len(mu_a))
    root_a = _psd_sqrt(s_a)
    middle = root_a @ s_b @ root_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * trace_sqrt)


def _polynomial_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 of equal-size sets under k(x, y) = (x.y / d + 1)^3."""
    m, d = a.shape
    k_aa = (a @ a.T / d + 1) ** 3
    k_bb = (b @ b.T / d + 1) ** 3
    k_ab = (a @ b.T / d + 1) ** 3
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within - 2 * k_ab.mean())


def kernel_inception_distance(
    features_a: Any,
    features_b: Any,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """The kernel inception distance (Binkowski et al., 2018, "Demystifying MMD GANs"): the
    unbiased MMD^2 between the feature sets under the cubic polynomial kernel
    ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets.

    Each of ``subsets`` rounds draws ``subset_size`` rows of each set without replacement
    (torchmetrics' defaults: 100 subsets of 1,000). Unbiased: its mean is 0 for two samples
    of one distribution, so small values can be negative.

    Args:
        features_a: ``(n_a, d)`` features.
        features_b: ``(n_b, d)`` features.
        subsets: number of subset pairs (at least 1).
        subset_size: rows per subset (at least 2, at most ``min(n_a, n_b)``).
        seed: seed of the ``np.random.default_rng`` drawing the subsets.

    Returns:
        ``(mean, std)`` over the subsets (population std, as torchmetrics).

    Raises:
        DataError: bad arrays, or fewer rows than ``subset_size``.
        ConfigError: ``subsets`` < 1, ``subset_size`` < 2 or a negative ``seed``.
    """
    subsets = _check_int(subsets, "subsets", 1)
    subset_size = _check_int(subset_size, "subset_size", 2)
    seed = _check_int(seed, "seed", 0)
    a = _check_points(features_a, "features_a")
    b = _check_points(features_b, "features_b", dim=a.shape[1])
    for name, x in (("features_a", a), ("features_b", b)):
        if len(x) < subset_size:
            raise DataError(
                f"{name} has {len(x)} rows, fewer than subset_size={subset_size}; pass more "
                f"samples or subset_size<={len(x)}"
            )
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _polynomial_mmd2(
                a[rng.choice(len(a), subset_size, replace=False)],
                b[rng.choice(len(b), subset_size, replace=False)],
            )
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std())


def _check_probs(probs: Any, name: str = "probs") -> np.ndarray:
    p = _check_points(probs, name)
    if p.min() < 0 or np.abs(p.sum(axis=1) - 1).max() > 1e-3:
        raise DataError(
            f"{name} must hold class probabilities (rows >= 0 summing to 1), got row sums "
            f"in [{p.sum(axis=1).min():.4g}, {p.sum(axis=1).max():.4g}], min {p.min():.4g}"
        )
    return p / p.sum(axis=1, keepdims=True)


def class_histogram_stats(labels_or_probs: Any, num_classes: int, *, min_count: int = 1) -> dict:
    """Classes covered and KL(histogram || uniform) of the predicted classes of samples: the
    Stacked MNIST mode metrics of VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al.,
    2018), here with any classifier's classes.

    Args:
        labels_or_probs: ``(n,)`` integer labels in ``[0, num_classes)``, or ``(n,
            num_classes)`` class probabilities (their argmax is the label).
        num_classes: the number of classes C.
        min_count: samples a class needs to count as covered.

    Returns:
        ``{"classes": classes with at least min_count samples, "num_classes": C,
        "kl_to_uniform": sum_c h_c log(C h_c)}`` in nats (0 for a uniform histogram,
        ``log C`` when all samples fall in one class).

    Raises:
        DataError: labels outside ``[0, C)``, probabilities that are not, or an empty input.
        ConfigError: ``num_classes`` < 1 or ``min_count`` < 1.
    """
    num_classes = _check_int(num_classes, "num_classes", 1)
    min_count = _check_int(min_count, "min_count", 1)
    x = np.asarray(labels_or_probs)
    if x.ndim == 2:
        if x.shape[1] != num_classes:
            raise DataError(
                f"probabilities have {x.shape[1]} columns but num_classes={num_classes}"
            )
        labels = _check_probs(x, "labels_or_probs").argmax(axis=1)
    elif x.ndim == 1 and x.size and x.dtype.kind in "iu":
        if x.min() < 0 or x.max() >= num_classes:
            raise DataError(f"labels must lie in [0, {num_classes}), got [{x.min()}, {x.max()}]")
        labels = x
    else:
        raise DataError(
            f"labels_or_probs must be non-empty (n,) integer labels or (n, {num_classes}) "
            f"probabilities, got {x.dtype} of shape {x.shape}"
        )
    counts = np.bincount(labels, minlength=num_classes)
    h = counts / counts.sum()
    return {
        "classes": int((counts >= min_count).sum()),
        "num_classes": num_classes,
        "kl_to_uniform": float(xlogy(h, h * num_classes).sum()),
    }


def inception_score(probs: Any) -> float:
    """The inception score of Salimans et al. (2016, "Improved Techniques for Training GANs")
    on any classifier's probabilities: ``exp E_x KL(p(y|x) || p(y))`` with ``p(y)`` the mean
    of ``p(y|x)`` over the samples (one split). Between 1 (every sample has the same
    prediction) and C (confident, balanced predictions).

    Args:
        probs: ``(n, C)`` class probabilities ``p(y|x)`` of the samples.

    Returns:
        The score.

    Raises:
        DataError: not an ``(n, C)`` array of probabilities (rows >= 0 summing to 1).
    """
    p = _check_probs(probs)
    marginal = p.mean(axis=0)
    kl = xlogy(p, p).sum(axis=1) - (p * np.log(np.where(marginal > 0, marginal, 1.0))).sum(1)
    return float(np.exp(kl.mean()))
