"""Datasets by name, for configuration files and the command line."""

import inspect
from collections.abc import Callable
from typing import Any

from ppgen.data.dataset import Dataset, check_split
from ppgen.data.digits import load_digits
from ppgen.data.mnist import load_mnist
from ppgen.data.toy import TOY_DATASETS, toy_loader
from ppgen.errors import ConfigError

__all__ = ["DATASETS", "IMAGE_DATASETS", "load_dataset"]

IMAGE_DATASETS = ("mnist", "digits")
"""The registered datasets of grey-scale images (the others are toy 2-D densities)."""

DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    **{name: toy_loader(name) for name in TOY_DATASETS},
}
"""Dataset name -> loader ``loader(split, **options) -> Dataset``: the images of
`IMAGE_DATASETS` and the toy 2-D densities of ``ppgen.data.toy.TOY_DATASETS``."""


def load_dataset(name: str, split: str, **kw: Any) -> Dataset:
    """Load split ``split`` of the dataset called ``name``.

    Args:
        name: a key of `DATASETS` (``"mnist"``, ``"digits"`` or a toy density such as
            ``"moons"``).
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"train_full"``.
        **kw: options of that dataset's loader (e.g. ``binarize``, ``seed``, and for MNIST
            ``data_dir`` and ``download``).

    Returns:
        The `Dataset`.

    Raises:
        ConfigError: for an unknown name, split or option (naming the valid ones).
        DataError: if the data cannot be read (see the loaders).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    check_split(split)
    loader = DATASETS[name]
    options = [p for p in inspect.signature(loader).parameters if p != "split"]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option(s) {', '.join(unknown)}; it takes "
            + (", ".join(options) or "none")
        )
    return loader(split, **kw)
