"""Validation of user-supplied arrays, with one-line messages that say how to fix them.

Trainers check their training data with `check_training_array` (through their batch
schedule) and recipes check images with `check_images`, so a wrong array fails there with a
`DataError` naming the problem, instead of as a shape error deep inside a network or as a
NaN loss many steps later. `pixel_levels` turns grey images back into their integer levels
(the targets of categorical pixel likelihoods), refusing data that are not on that grid.
"""

import math
from typing import Any

import numpy as np

from ppgen.errors import ConfigError, DataError

__all__ = [
    "GREY_LEVEL_TOLERANCE",
    "check_images",
    "check_input_scale",
    "check_training_array",
    "check_unit_interval",
    "pixel_levels",
]

# Bool, signed and unsigned integers and floats; complex, strings, objects etc. are refused.
_NUMERIC_KINDS = "biuf"


def _describe_dim(d: int) -> str:
    """``"784 (28x28)"`` for a square number of pixels, else ``"784"``."""
    side = math.isqrt(d)
    return f"{d} ({side}x{side})" if side * side == d and d > 1 else str(d)


def check_images(x: np.ndarray, *, dim: int | None = None, name: str = "x") -> np.ndarray:
    """Check a batch of grey-scale images and return it as a float32 ``(N, D)`` array.

    Args:
        x: ``(N, D)`` flat images or ``(N, H, W)`` images (flattened to ``D = H * W``),
            of any real or boolean dtype, with values in [0, 1].
        dim: the number of pixels per example the model expects; None accepts any.
        name: what to call ``x`` in error messages.

    Returns:
        ``x`` as a 2-D float32 array (a view when ``x`` already is float32).

    Raises:
        DataError: with a one-line fix if ``x`` is empty, not numeric, not 2-D or 3-D, has
            the wrong number of pixels, contains NaN or Inf, or has values outside [0, 1].
    """
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataError(f"{name} is not an array ({err}); pass a numeric (N, D) array") from err
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(
            f"{name} has dtype {x.dtype} (not real numbers); pass a numeric array, e.g. "
            f"np.asarray({name}, dtype=np.float32)"
        )
    if x.size == 0:
        raise DataError(f"{name} is empty (shape {x.shape}); pass at least one example")
    if x.ndim == 3:
        x = x.reshape(len(x), -1)  # (N, H, W) -> (N, H * W)
    elif x.ndim != 2:
        hint = f"; for one example use {name}[None]" if x.ndim == 1 else ""
        raise DataError(
            f"{name} has {x.ndim} dimension(s) (shape {x.shape}) but must be (N, D) or "
            f"(N, H, W) grey-scale images{hint}"
        )
    if dim is not None and x.shape[1] != dim:
        side = math.isqrt(x.shape[1])
        guess = f" ({side}x{side} images?)" if side * side == x.shape[1] else ""
        raise DataError(
            f"{name} has {x.shape[1]} features per example{guess} but the model expects "
            f"{_describe_dim(dim)}; resize the images or build the model for this size"
        )
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            raise DataError(
                f"{name} has {int(bad.sum())} NaN/Inf value(s), the first in example {i} "
                f"(pixel {j}); drop or repair those examples"
            )
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > 1:
        hint = f", e.g. {name} / 255" if hi <= 255 and lo >= 0 else ""
        raise DataError(
            f"{name} has values outside [0, 1] (min {lo}, max {hi}); scale the pixels to "
            f"[0, 1]{hint}"
        )
    return x.astype(np.float32, copy=False)


def check_training_array(
    x: Any, *, min_rows: int = 1, name: str = "x", labels: bool = False, min_ndim: int = 2
) -> np.ndarray:
    """Check an array of training examples ``(N, ...)`` and return it as a numpy array.

    Args:
        x: Array-like, one row per example: at least two dimensions (examples, features...),
            or one for integer labels.
        min_rows: The fewest rows allowed (a trainer's batch size).
        name: What to call ``x`` in error messages.
        labels: ``x`` holds integer labels (one dimension allowed).
        min_ndim: The fewest dimensions (2: examples and features; 1 for one value per
            example, e.g. among several arrays).

    Raises:
        DataError: Not numeric, too few dimensions or rows, or NaN/Inf values.
    """
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataError(f"{name} is not an array ({err}); pass a numeric (N, D) array") from err
    if x.dtype.kind not in _NUMERIC_KINDS:
        raise DataError(f"{name} has dtype {x.dtype} (not real numbers); pass a numeric array")
    if x.ndim < (1 if labels else min_ndim):
        raise DataError(
            f"expected {name} of shape (N, features), got {x.shape}; for one example use "
            f"{name}[None]"
        )
    if len(x) == 0:
        raise DataError(f"{name} holds no examples (shape {x.shape}); pass at least one row")
    if len(x) < min_rows:
        raise DataError(
            f"{name} has {len(x)} examples, fewer than batch_size={min_rows}: need at least "
            f"{min_rows} rows (the batch size)"
        )
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"{name} contains NaN or Inf; drop or impute those examples first")
    if labels and (x.dtype.kind in "fc" and np.any(x != np.round(x.real))):
        raise DataError(
            f"{name} holds class labels, but some are not whole numbers; pass class indices "
            "0, 1, ... (e.g. y.astype(np.int64) after mapping class names to indices)"
        )
    if labels and x.size and x.min() < 0:
        raise DataError(
            f"{name} holds class labels, but some are negative ({x.min():g}); pass class "
            "indices 0, 1, ... (partly labelled data, -1 where missing, train with "
            "LabelledBatches)"
        )
    return x


def check_unit_interval(x: np.ndarray, why: str = "dynamic binarization") -> None:
    """Raise :class:`DataError` unless every value of ``x`` lies in [0, 1] (probabilities
    for a Bernoulli draw); ``why`` names what needs it."""
    x = np.asarray(x)
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        raise DataError(
            f"{why} needs x in [0, 1], got values in [{x.min():g}, {x.max():g}]; rescale the "
            "data (e.g. x / 255)"
        )


def check_input_scale(scale: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Per-value standard deviations of Gaussian noise a trainer adds to its inputs
    (``InputNoise``), as a float32 array.

    Args:
        scale: ``(N, D)`` float standard deviations.
        shape: The training data's shape, which the scales must match (one per value).

    Raises:
        DataError: Not a finite, non-negative float array ``(N, D)``, or not of ``shape``.
    """
    arr = np.asarray(scale)
    if arr.dtype.kind != "f" or arr.ndim != 2:
        raise DataError(
            f"input_scale must be a float array (N, D) of standard deviations, got {arr.dtype} "
            f"of shape {arr.shape}"
        )
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise DataError(
            f"input_scale has shape {arr.shape} but the training x has {tuple(shape)}; give "
            "one standard deviation per training value"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise DataError("input_scale must be finite and non-negative")
    return arr.astype(np.float32)


GREY_LEVEL_TOLERANCE = 1e-4
"""How far ``(L - 1) x`` may be from an integer for ``x`` to count as a grey level ``k / (L -
1)``: float32 rounding of ``k / 255`` moves ``255 x`` by at most ~2e-5; noise or another
scale by far more."""


def pixel_levels(x: np.ndarray, levels: int = 256, *, binary_ok: bool = False) -> np.ndarray:
    """The integer grey levels ``k`` of pixels stored as ``k / (levels - 1)``, e.g. 8-bit MNIST
    loaded unbinarized (``x = k / 255`` in float32) -> ``k`` in ``0..255``, the targets of a
    256-way categorical likelihood (PixelCNN's).

    Args:
        x: float pixel intensities in [0, 1], any shape (e.g. ``Dataset.x``).
        levels: the number of grey levels ``L`` (256 for MNIST, 17 for scikit-learn's
            digits).
        binary_ok: accept data whose every value is 0 or 1 (by default refused, as that is
            what binarized data look like).

    Returns:
        int32 levels in ``0 .. levels - 1`` with the shape of ``x``.

    Raises:
        ConfigError: if ``levels`` is not an integer >= 2.
        DataError: if ``x`` is not floating point, has NaN or values outside [0, 1], is not on
            the ``k / (levels - 1)`` grid (noisy or dequantised data), or is binarized (only 0
            and 1, unless ``binary_ok``).
    """
    if not isinstance(levels, int | np.integer) or isinstance(levels, bool) or levels < 2:
        raise ConfigError(f"the number of grey levels must be an integer >= 2, got {levels!r}")
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DataError(
            f"pixel_levels takes float pixels k / {levels - 1} in [0, 1], got dtype {x.dtype}"
            + ("; integer pixels already are levels" if x.dtype.kind in "iu" else "")
        )
    check_unit_interval(x, why="pixel_levels")  # NaN fails it too
    scaled = x.astype(np.float64) * (levels - 1)
    k = np.rint(scaled)
    off = np.abs(scaled - k)
    if x.size and off.max() > GREY_LEVEL_TOLERANCE:
        i = np.unravel_index(np.argmax(off), x.shape)
        raise DataError(
            f"pixels are not on the grid of {levels} grey levels k / {levels - 1} (e.g. "
            f"x[{', '.join(map(str, i))}] = {x[i]:.6g}): noisy or dequantised data? load the "
            "dataset with binarize='none' and no noise"
        )
    if not binary_ok and x.size > 1 and np.all((k == 0) | (k == levels - 1)):
        raise DataError(
            f"every pixel is 0 or 1: the data look binarized, not {levels} grey levels; load "
            "the dataset with binarize='none' (or pass binary_ok=True)"
        )
    return k.astype(np.int32)
