"""Partial labels: a class-balanced labelled subset, user labels with a missing marker, and
the minibatch schedule that mixes labelled and unlabelled examples.

Semi-supervised models (Kingma et al. 2014, "Semi-supervised learning with deep generative
models") see a few labelled examples and many unlabelled ones. Labels live in one int64
array with ``MISSING`` (-1) where an example has none, so a user's own partially labelled
data needs no other format.

Batches: every optimisation step gets one unlabelled batch and one labelled batch. An epoch
is one pass over the unlabelled examples; the labelled set, far smaller, is cycled (each
pass reshuffled), so at N=100 labels every labelled example is seen many times per epoch.
This is the schedule of Kingma et al.'s code and of Pyro's SS-VAE example with the labelled
batches spread evenly instead of interleaved in blocks.
"""

from __future__ import annotations

import numpy as np

from ppgen.data.batching import seeded_rng
from ppgen.errors import ConfigError, DataError

__all__ = [
    "MISSING",
    "check_labelled",
    "check_labels",
    "labelled_subset",
    "partial_labels",
    "semi_supervised_indices",
]

MISSING = -1


def check_labels(
    y: np.ndarray, *, n: int | None = None, num_classes: int = 10, name: str = "y"
) -> np.ndarray:
    """Validate partial labels: integers in ``[0, num_classes)`` or ``MISSING``.

    Args:
        y: Labels, shape (N,), integer dtype; ``-1`` marks a missing label.
        n: The number of examples the labels must match (``len(x)``).
        num_classes: Number of classes.
        name: Name used in error messages.

    Returns:
        ``y`` as int64.

    Raises:
        DataError: Wrong dtype (float, string, bool), shape or length; labels out of range.
    """
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise DataError(
            f"{name} has dtype {y.dtype}, but labels must be integers (class indices 0.."
            f"{num_classes - 1}, {MISSING} where missing); convert with y.astype(np.int64) "
            "after mapping class names to indices"
        )
    if y.ndim != 1:
        raise DataError(f"{name} must be one label per example, shape (N,), got {y.shape}")
    if n is not None and len(y) != n:
        raise DataError(f"{name} has {len(y)} labels but the data has {n} examples")
    bad = (y != MISSING) & ((y < 0) | (y >= num_classes))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{name} has {int(bad.sum())} labels outside 0..{num_classes - 1} (first: "
            f"{name}[{first}] = {y[first]}); use {MISSING} for a missing label"
        )
    return y.astype(np.int64)


def check_labelled(
    data: object, *, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fully labelled data ``(x, y)`` (what a classifier is evaluated on): ``y`` as int64.

    Args:
        data: The pair ``(x, y)``.
        num_classes: Labels must lie in ``0..num_classes - 1`` (``None``: only ``>= 0``).

    Raises:
        DataError: Not a pair, labels that :func:`check_labels` refuses, or a missing (-1)
            label.
    """
    if not (isinstance(data, tuple | list) and len(data) == 2):
        raise DataError("evaluating a classifier needs labelled data (x, y), every label given")
    x, y = data
    limit = num_classes if num_classes is not None else int(np.max(y, initial=0)) + 1
    y = check_labels(y, n=len(x), num_classes=limit)
    if (y == MISSING).any():
        raise DataError("evaluation labels must all be present (no -1)")
    return np.asarray(x), y


def labelled_subset(
    y: np.ndarray, n_labels: int, *, num_classes: int = 10, seed: int = 0
) -> np.ndarray:
    """Indices of a class-balanced labelled subset: ``n_labels / num_classes`` per class.

    Args:
        y: Full labels (no missing entries), shape (N,).
        n_labels: Size of the subset; a multiple of ``num_classes``.
        num_classes: Number of classes.
        seed: Chooses the subset (different seeds, different label draws).

    Returns:
        Sorted int64 indices into ``y``.

    Raises:
        ConfigError: ``n_labels`` smaller than ``num_classes`` or not a multiple of it.
        DataError: A class has fewer examples than its share.
    """
    y = check_labels(y, num_classes=num_classes)
    if n_labels < num_classes or n_labels % num_classes:
        raise ConfigError(
            f"a class-balanced subset needs a multiple of {num_classes} labels (one share per "
            f"class), got {n_labels}"
        )
    per_class = n_labels // num_classes
    rng = seeded_rng(seed, n_labels)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(y == c)
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} examples, fewer than {per_class}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def partial_labels(
    y: np.ndarray, n_labels: int, *, num_classes: int = 10, seed: int = 0
) -> np.ndarray:
    """``y`` with all but a class-balanced subset of ``n_labels`` replaced by ``MISSING``."""
    keep = labelled_subset(y, n_labels, num_classes=num_classes, seed=seed)
    out = np.full(len(y), MISSING, dtype=np.int64)
    out[keep] = np.asarray(y)[keep]
    return out


def semi_supervised_indices(
    y: np.ndarray, *, batch_size: int, labelled_batch_size: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's minibatch schedule over partially labelled data.

    Args:
        y: Partial labels, ``MISSING`` where unlabelled.
        batch_size: Unlabelled examples per step; the epoch is one pass over them
            (the last partial batch dropped).
        labelled_batch_size: Labelled examples per step, cycled through the labelled set
            (at most all of them: a larger size is lowered to the number of labels).
        seed: Seed of the run.
        epoch: Epoch number (the schedule depends on ``(seed, epoch)`` only).

    Returns:
        ``(labelled, unlabelled)`` index arrays of shapes (steps, labelled_batch_size) and
        (steps, batch_size), int32, ready for a ``lax.scan`` or a Python loop.

    Raises:
        ConfigError: Non-positive sizes, no labelled, no unlabelled or too few unlabelled
            examples.
    """
    y = np.asarray(y)
    labelled, unlabelled = np.flatnonzero(y != MISSING), np.flatnonzero(y == MISSING)
    if batch_size < 1 or labelled_batch_size < 1:
        raise ConfigError("batch sizes must be positive")
    if len(labelled) == 0:
        raise ConfigError("no labelled examples: give at least one label per class")
    if len(unlabelled) == 0:
        raise ConfigError(
            "every example is labelled (no -1 in y): semi-supervised training needs unlabelled "
            "examples; to train on the labels alone use Minibatches(labels=(1,)) and ELBO"
        )
    if len(unlabelled) < batch_size:
        raise ConfigError(
            f"{len(unlabelled)} unlabelled examples, fewer than one batch "
            f"({batch_size}); lower the batch size"
        )
    labelled_batch_size = min(labelled_batch_size, len(labelled))
    rng = seeded_rng(seed, epoch)
    steps = len(unlabelled) // batch_size
    u = rng.permutation(unlabelled)[: steps * batch_size].reshape(steps, batch_size)
    passes = -(-steps * labelled_batch_size // len(labelled))  # ceil
    cycle = np.concatenate([rng.permutation(labelled) for _ in range(passes)])
    lab = cycle[: steps * labelled_batch_size].reshape(steps, labelled_batch_size)
    return lab.astype(np.int32), u.astype(np.int32)
