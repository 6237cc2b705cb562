"""Datasets by name, for configuration files and the command line.

Three registries, one per kind of data, since their loaders return different containers:
`DATASETS` (images and toy 2-D densities -> `Dataset`), `TEXT_DATASETS` (-> `TextCorpus`)
and `AUDIO_DATASETS` (-> `AudioCorpus`).
"""

import inspect
from collections.abc import Callable
from typing import Any

from ppgen.data.audio import AudioCorpus, load_speech
from ppgen.data.dataset import Dataset, check_split
from ppgen.data.digits import load_digits
from ppgen.data.mnist import load_mnist
from ppgen.data.text import TextCorpus, load_shakespeare
from ppgen.data.toy import TOY_DATASETS, toy_loader
from ppgen.errors import ConfigError

__all__ = [
    "AUDIO_DATASETS",
    "DATASETS",
    "IMAGE_DATASETS",
    "TEXT_DATASETS",
    "load_audio",
    "load_dataset",
    "load_text",
]

IMAGE_DATASETS = ("mnist", "digits")
"""The registered datasets of grey-scale images (the others are toy 2-D densities)."""

DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "digits": load_digits,
    **{name: toy_loader(name) for name in TOY_DATASETS},
}
"""Dataset name -> loader ``loader(split, **options) -> Dataset``: the images of
`IMAGE_DATASETS` and the toy 2-D densities of ``ppgen.data.toy.TOY_DATASETS``."""

TEXT_DATASETS: dict[str, Callable[..., TextCorpus]] = {"shakespeare": load_shakespeare}
"""Text dataset name -> loader ``loader(split, **options) -> TextCorpus``."""

AUDIO_DATASETS: dict[str, Callable[..., AudioCorpus]] = {"speech": load_speech}
"""Audio dataset name -> loader ``loader(split, **options) -> AudioCorpus``."""


def _load(registry: dict[str, Callable[..., Any]], kind: str, name: str, split: str, kw: dict):
    """``registry[name](split, **kw)`` after checking the name, split and options."""
    if name not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(registry)}")
    check_split(split)
    loader = registry[name]
    options = [p for p in inspect.signature(loader).parameters if p != "split"]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise ConfigError(
            f"{kind} {name!r} has no option(s) {', '.join(unknown)}; it takes "
            + (", ".join(options) or "none")
        )
    return loader(split, **kw)


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
    return _load(DATASETS, "dataset", name, split, kw)


def load_text(name: str, split: str, **kw: Any) -> TextCorpus:
    """Load split ``split`` of the text dataset called ``name`` (a key of `TEXT_DATASETS`).

    Args:
        name: ``"shakespeare"``.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"train_full"``.
        **kw: options of the loader (``data_dir``, ``download``).

    Returns:
        The `TextCorpus`.

    Raises:
        ConfigError: for an unknown name, split or option (naming the valid ones).
        DataError: if the data cannot be read (see `load_shakespeare`).
    """
    return _load(TEXT_DATASETS, "text dataset", name, split, kw)


def load_audio(name: str, split: str, **kw: Any) -> AudioCorpus:
    """Load split ``split`` of the audio dataset called ``name`` (a key of `AUDIO_DATASETS`).

    Args:
        name: ``"speech"``.
        split: ``"train"``, ``"valid"``, ``"test"`` or ``"train_full"``.
        **kw: options of the loader (``data_dir``).

    Returns:
        The `AudioCorpus`.

    Raises:
        ConfigError: for an unknown name, split or option (naming the valid ones).
        DataError: if the data cannot be read (see `load_speech`).
    """
    return _load(AUDIO_DATASETS, "audio dataset", name, split, kw)
