"""The in-memory dataset container, the split names and where data files live.

A `Dataset` is what every loader returns and what both backends' trainers consume: flat
float32 images in [0, 1], one row per example, with the image shape kept alongside so that
plots can fold rows back into pictures.
"""

import os
import pathlib
from dataclasses import dataclass

import numpy as np

from ppgen.errors import ConfigError, DataError

__all__ = ["SPLITS", "Dataset", "check_split", "data_dir"]

SPLITS = ("train", "valid", "test", "train_full")
"""Split names every loader accepts. ``train`` and ``valid`` are disjoint parts of the
training data and together make ``train_full``; ``test`` is held out."""

StrPath = str | os.PathLike


@dataclass(frozen=True)
class Dataset:
    """A set of flat grey-scale images (and optional labels).

    Attributes:
        x: ``(N, D)`` float32 pixel intensities in [0, 1] (or exactly 0/1 when binarized),
            ``D = image_shape[0] * image_shape[1]``.
        y: ``(N,)`` int64 class labels, or None for unlabelled data.
        image_shape: ``(height, width)`` of one image, for reshaping rows into pictures.
        name: a short description such as ``"mnist-train"``.
        num_classes: the number of classes the labels come from (``None`` when unlabelled),
            a property of the dataset rather than of the labels a split happens to hold.

    Raises:
        DataError: if the arrays do not have the dtypes and shapes above. (Value ranges are
            checked by `ppgen.data.check_images`, which costs a pass over the data.)
    """

    x: np.ndarray
    y: np.ndarray | None
    image_shape: tuple[int, int]
    name: str
    num_classes: int | None = None

    def __post_init__(self) -> None:
        x, y, (h, w) = self.x, self.y, self.image_shape
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise DataError(
                f"Dataset {self.name!r}: x must be a 2-D float32 array (N, D), got "
                f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}; "
                "use ppgen.data.check_images(x) to convert it"
            )
        if x.shape[1] != h * w:
            raise DataError(
                f"Dataset {self.name!r}: x has {x.shape[1]} features per example but "
                f"image_shape {self.image_shape} needs {h * w}"
            )
        if y is not None and (
            not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),)
        ):
            raise DataError(
                f"Dataset {self.name!r}: y must be None or an int64 array of shape "
                f"({len(x)},), got {getattr(y, 'dtype', type(y).__name__)} "
                f"{getattr(y, 'shape', '')}"
            )

    def __len__(self) -> int:
        return len(self.x)


def check_split(split: str) -> str:
    """Return ``split`` if it is one of `SPLITS`.

    Raises:
        ConfigError: naming the valid choices otherwise.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return split


def data_dir(path: StrPath | None = None) -> pathlib.Path:
    """Where ppgen keeps downloaded data files.

    The first that is set wins: the explicit ``path``; the environment variable
    ``PPGEN_DATA``; ``$XDG_CACHE_HOME/ppgen``; ``~/.cache/ppgen``. The directory is not
    created here (a loader creates it only when it downloads something). Each dataset has
    a sub-directory, e.g. MNIST lives in ``<data_dir>/mnist/``.

    Args:
        path: an explicit directory; ``~`` is expanded.

    Returns:
        The directory as an absolute path (it may not exist yet).
    """
    if path is None:
        path = os.environ.get("PPGEN_DATA") or None
    if path is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        path = os.path.join(cache, "ppgen")
    return pathlib.Path(path).expanduser().absolute()
