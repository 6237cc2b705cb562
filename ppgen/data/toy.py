"""Toy 2-D densities for normalizing flows and other density estimators.

The definitions (scales, noise levels) are those of the toy data of FFJORD (Grathwohl et
al., 2019, "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
Models"), which most of the flow literature reuses, so plots and log-likelihoods are
comparable. The mode-collapse sets ``ring8`` and ``grid25`` are those of VEEGAN
(Srivastava et al., 2017) and PacGAN (Lin et al., 2018); `toy_modes` gives their centres and
standard deviation, which the mode-coverage metrics of `ppgen.sample_quality` read. Every
sampler draws from one ``np.random.default_rng(seed)``; samples are
returned in random order (no class is grouped at the start), so any prefix of a sample is a
sample too.
"""

import zlib
from collections.abc import Callable

import numpy as np

from ppgen.data.dataset import Dataset, check_split
from ppgen.errors import ConfigError

__all__ = [
    "TOY_DATASETS",
    "TOY_DENSITIES",
    "TOY_SPLIT_SIZES",
    "load_toy",
    "sample_toy",
    "toy_loader",
    "toy_modes",
]


def _two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles with Gaussian noise (std 0.1), scaled by 2, shifted."""
    import sklearn.datasets  # deferred: importing scikit-learn takes about a second

    # make_moons wants a legacy seed; derive it from rng so `seed` alone fixes the draw.
    x, _ = sklearn.datasets.make_moons(
        n_samples=n, noise=0.1, random_state=int(rng.integers(2**32 - 1))
    )  # shuffled by make_moons
    return x * 2 + np.array([-1.0, -0.2])


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    """An equal mixture of 8 Gaussians (std 0.5) on a circle of radius 4, divided by 1.414."""
    angles = np.arange(8) * (np.pi / 4)
    centers = 4.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (8, 2)
    x = centers[rng.integers(8, size=n)] + 0.5 * rng.standard_normal((n, 2))
    return x / 1.414


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the 8 dark squares of a 4x4 checkerboard of side 8 centred at 0."""
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(2, size=n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], axis=1) * 2


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    """Five arms: Gaussian blobs (radial std 0.3, tangential 0.1) bent by a rotation that
    grows exponentially with the radius (rate 0.25); the arms are balanced."""
    num_arms, rate = 5, 0.25
    features = rng.standard_normal((n, 2)) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    arm = rng.permutation(np.arange(n) % num_arms)
    angles = arm * (2 * np.pi / num_arms) + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    # Row vector times the rotation matrix [[cos, -sin], [sin, cos]].
    x = np.stack(
        [features[:, 0] * cos + features[:, 1] * sin, -features[:, 0] * sin + features[:, 1] * cos],
        axis=1,
    )
    return 2 * x


def _two_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved spirals of 1.5 turns, point-symmetric about 0, with noise."""
    t = np.sqrt(rng.random(n)) * (540 * 2 * np.pi / 360)  # angle along the spiral
    arm = -np.cos(t) * t + rng.random(n) * 0.5, np.sin(t) * t + rng.random(n) * 0.5
    sign = rng.permutation(np.where(np.arange(n) % 2 == 0, 1.0, -1.0))  # balanced arms
    x = sign[:, None] * np.stack(arm, axis=1) / 3
    return x + 0.1 * rng.standard_normal((n, 2))


def _ring8_centers() -> np.ndarray:
    """The 8 centres of ``ring8``: equally spaced on the circle of radius 2, the first at
    (2, 0). Returns ``(8, 2)`` float64."""
    angles = np.arange(8) * (2 * np.pi / 8)
    return 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _grid25_centers() -> np.ndarray:
    """The 25 centres of ``grid25``: the grid {-4, -2, 0, 2, 4}^2, row-major. Returns
    ``(25, 2)`` float64."""
    axis = np.arange(-4.0, 5.0, 2.0)
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)


# name -> (centres function, standard deviation of every component)
_MODES: dict[str, tuple[Callable[[], np.ndarray], float]] = {
    "ring8": (_ring8_centers, 0.02),  # VEEGAN's 2D Ring (Srivastava et al., 2017)
    "grid25": (_grid25_centers, 0.05),  # PacGAN's 2D-grid (Lin et al., 2018)
}


def _mixture_sampler(name: str) -> Callable[[np.random.Generator, int], np.ndarray]:
    """The sampler of the equal mixture of isotropic Gaussians ``name`` of `_MODES`."""
    centers_fn, std = _MODES[name]

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        centers = centers_fn()
        return centers[rng.integers(len(centers), size=n)] + std * rng.standard_normal((n, 2))

    sample.__doc__ = f"An equal mixture of isotropic Gaussians (std {std}): {name!r}."
    return sample


def toy_modes(name: str) -> tuple[np.ndarray, float]:
    """The mode centres and the common standard deviation of a mode-collapse toy set.

    ``ring8``: 8 Gaussians of std 0.02 equally spaced on the circle of radius 2 (VEEGAN's
    2D Ring, Srivastava et al., 2017, "VEEGAN: Reducing Mode Collapse in GANs using Implicit
    Variational Learning"); ``grid25``: 25 Gaussians of std 0.05 centred on {-4, -2, 0, 2,
    4}^2 (PacGAN's 2D-grid, Lin et al., 2018, "PacGAN: The power of two samples in generative
    adversarial networks"). Both are equal mixtures.

    Args:
        name: ``"ring8"`` or ``"grid25"``.

    Returns:
        ``(centers, std)``: a new float64 array ``(K, 2)`` of the K mode centres and the
        standard deviation of every (isotropic) component.

    Raises:
        ConfigError: for any other name (naming those with modes).
    """
    if name not in _MODES:
        raise ConfigError(
            f"toy set {name!r} has no listed modes; toy_modes knows {', '.join(_MODES)}"
        )
    centers_fn, std = _MODES[name]
    return centers_fn(), std


_SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "two_moons": _two_moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "ring8": _mixture_sampler("ring8"),
    "grid25": _mixture_sampler("grid25"),
}

TOY_DENSITIES = tuple(_SAMPLERS)
"""Names accepted by `sample_toy`."""


def sample_toy(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Draw ``n`` points from a toy 2-D density.

    Args:
        name: one of `TOY_DENSITIES`: ``"two_moons"``, ``"8gaussians"``,
            ``"checkerboard"``, ``"pinwheel"``, ``"2spirals"``, ``"ring8"``, ``"grid25"``,
            or its dataset name
            (`TOY_DATASETS`: ``"moons"``, ``"spirals"``, the names ``--dataset`` takes).
        n: number of points (at least 1).
        seed: seed of ``np.random.default_rng``; the same seed gives the same points.

    Returns:
        A float32 array of shape ``(n, 2)``.

    Raises:
        ConfigError: for an unknown ``name`` or a bad ``n`` or ``seed``.
    """
    name = TOY_DATASETS.get(name, name)
    if name not in _SAMPLERS:
        raise ConfigError(
            f"unknown toy density {name!r}; choose one of {', '.join(_SAMPLERS)} (or "
            f"{', '.join(TOY_DATASETS)})"
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return _SAMPLERS[name](np.random.default_rng(seed), int(n)).astype(np.float32)


TOY_DATASETS = {
    "moons": "two_moons",
    "8gaussians": "8gaussians",
    "checkerboard": "checkerboard",
    "pinwheel": "pinwheel",
    "spirals": "2spirals",
    "ring8": "ring8",
    "grid25": "grid25",
}
"""Dataset names (``ppgen train flow --dataset``) -> the toy density each samples."""

TOY_SPLIT_SIZES = {"train": 20_000, "valid": 5_000, "train_full": 25_000, "test": 10_000}
"""Points per split of a toy dataset (``train_full`` is ``train`` then ``valid``)."""


def load_toy(name: str, split: str = "train") -> Dataset:
    """A split of a toy 2-D density as a :class:`~ppgen.data.Dataset` of points.

    Each split is a fixed draw (seeded by the density's and the split's names, never by a
    user seed), so every run of a density trains and is tested on the same points; the
    splits are independent draws, ``train_full`` is ``train`` then ``valid``. The points are
    real-valued (not in [0, 1]); ``image_shape`` is ``(1, 2)`` so that a row is one point.

    Args:
        name: A key of `TOY_DATASETS` (``"moons"``, ``"8gaussians"``, ``"checkerboard"``,
            ``"pinwheel"``, ``"spirals"``, ``"ring8"``, ``"grid25"``).
        split: ``"train"``, ``"valid"``, ``"train_full"`` or ``"test"`` (sizes in
            `TOY_SPLIT_SIZES`).

    Returns:
        A `Dataset` named ``"<name>-<split>"``, ``x`` float32 ``(N, 2)``, no labels.

    Raises:
        ConfigError: An unknown name or split.
    """
    if name not in TOY_DATASETS:
        raise ConfigError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_DATASETS)}")
    check_split(split)
    parts = ("train", "valid") if split == "train_full" else (split,)
    x = np.concatenate(
        [
            sample_toy(
                TOY_DATASETS[name],
                TOY_SPLIT_SIZES[part],
                seed=zlib.crc32(f"{name}-{part}".encode()),
            )
            for part in parts
        ]
    )
    return Dataset(x=x, y=None, image_shape=(1, 2), name=f"{name}-{split}")


def toy_loader(name: str) -> Callable[..., Dataset]:
    """The loader of the toy dataset ``name`` as the dataset registry takes it:
    ``loader(split) -> Dataset`` (see :func:`load_toy`)."""

    def load(split: str = "train") -> Dataset:
        return load_toy(name, split)

    load.__name__ = f"load_{name}"
    load.__doc__ = f"The {name!r} toy dataset (:func:`ppgen.data.toy.load_toy`)."
    return load
