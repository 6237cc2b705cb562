"""Binarization of grey-scale images for Bernoulli likelihoods.

Grey values ``x`` in [0, 1] are read as probabilities and replaced by one Bernoulli draw
``b ~ Bernoulli(x)``. *Static* binarization draws once and keeps the result (the fixed
binarized MNIST of Salakhutdinov & Murray, 2008); *dynamic* binarization draws afresh
every epoch, which regularises training (Burda et al., 2016, "Importance Weighted
Autoencoders", section 5.1). Dynamic draws are made by the backend trainers per epoch, from
``(seed, epoch)`` (see `ppgen.data.epoch_rng`), so a loader in ``"dynamic"`` mode returns
grey values unchanged.
"""

import numpy as np

from ppgen.data.batching import seeded_rng
from ppgen.errors import ConfigError, DataError

__all__ = ["BINARIZE_MODES", "bernoulli_binarize", "binarize", "check_binarize_mode"]

BINARIZE_MODES = ("none", "static", "dynamic")


def check_binarize_mode(mode: str) -> str:
    """Return ``mode`` if it is one of `BINARIZE_MODES`.

    Raises:
        ConfigError: naming the valid choices otherwise.
    """
    if mode not in BINARIZE_MODES:
        raise ConfigError(
            f"unknown binarization {mode!r}; choose one of {', '.join(BINARIZE_MODES)}"
        )
    return mode


def bernoulli_binarize(x: np.ndarray, seed: int | np.random.Generator = 0) -> np.ndarray:
    """One Bernoulli draw per pixel, ``b = 1[u < x]`` with ``u ~ Uniform(0, 1)``.

    Args:
        x: probabilities in [0, 1], any shape.
        seed: a non-negative integer, or a generator (e.g. ``epoch_rng(seed, epoch)`` for
            dynamic binarization; it is advanced).

    Returns:
        A float32 array of zeros and ones with the shape of ``x``.

    Raises:
        DataError: if ``x`` has values outside [0, 1] (or NaN).
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size and not (x.min() >= 0.0 and x.max() <= 1.0):
        raise DataError(
            f"cannot binarize values outside [0, 1] (min {x.min()}, max {x.max()}); "
            "scale pixels first, e.g. x / 255"
        )
    u = seeded_rng(seed).random(x.shape, dtype=np.float32)
    return (u < x).astype(np.float32)


def binarize(x: np.ndarray, mode: str, seed: int = 0) -> np.ndarray:
    """Apply a binarization mode.

    Args:
        x: grey values in [0, 1].
        mode: ``"none"`` returns ``x`` as float32; ``"static"`` returns one fixed Bernoulli
            draw seeded by ``seed``; ``"dynamic"`` returns ``x`` as float32 too, because
            the trainers draw a new binarization every epoch.
        seed: the seed of the static draw.

    Returns:
        A float32 array with the shape of ``x``.

    Raises:
        ConfigError: for an unknown ``mode``.
    """
    if check_binarize_mode(mode) == "static":
        return bernoulli_binarize(x, seed)
    return np.asarray(x, dtype=np.float32)
