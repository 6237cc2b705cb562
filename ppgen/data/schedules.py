"""Batch schedules: which rows of the training data every step of an epoch sees.

A trainer takes one schedule. It checks the training data once per epoch (:meth:`arrays`),
draws the row indices of every step from ``(seed, epoch)`` alone (:meth:`indices`, numpy, the
same on both backends, so a resumed epoch repeats the uninterrupted one and the Pyro and
NumPyro trainers see the same minibatches in the same order), and says how a step's rows
become the objective's positional arguments (:meth:`gather`) and its size keywords
(:meth:`kwargs`). The backends do only the gathering, on their own arrays.

- :class:`Minibatches`: plain shuffled minibatches, ``objective(model, guide, x,
  num_data=N)``; data is one array or a tuple of arrays batched alike.
- :class:`LabelledBatches`: partially labelled ``(x, y)`` with ``y = -1`` where missing;
  every step one labelled and one unlabelled batch, ``objective(model, guide, x_l, y_l, x_u,
  num_labelled=N_l, num_unlabelled=N_u)`` (Kingma et al. 2014).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ppgen.data.batching import minibatch_indices
from ppgen.data.checks import check_training_array
from ppgen.data.labels import MISSING, check_labels, semi_supervised_indices
from ppgen.errors import ConfigError, DataError

__all__ = ["LabelledBatches", "Minibatches", "Schedule", "argument_names"]


class Schedule:
    """What a trainer asks of a batch schedule (see the module docstring).

    Attributes:
        inputs: The positions of the objective's data inputs among its arguments, to which
            a trainer's per-batch transform (dynamic binarization, input noise) applies;
            the other arguments (labels) are passed as they are.
        labels: The positions (into :meth:`arrays`) of integer label arrays; every other
            array is converted to the parameters' float dtype.
    """

    inputs: tuple[int, ...] = (0,)
    labels: tuple[int, ...] = ()
    takes_num_data: bool = True  # whether a trainer's num_data means something here

    def arrays(self, data: Any, batch_size: int) -> tuple[np.ndarray, ...]:
        """Check one epoch's training data and return its arrays."""
        raise NotImplementedError

    def gather(self, arrays: tuple[np.ndarray, ...]) -> tuple[tuple[int, int], ...]:
        """For each positional argument of the objective after ``model, guide``: the
        ``(array, index set)`` it is gathered from, i.e. argument ``j`` of step ``s`` is
        ``arrays[a][indices[i][s]]`` for ``gather[j] = (a, i)``."""
        raise NotImplementedError

    def indices(
        self, arrays: tuple[np.ndarray, ...], batch_size: int, *, seed: int, epoch: int
    ) -> tuple[np.ndarray, ...]:
        """Row indices of every step, one int32 array ``(steps, size)`` per index set."""
        raise NotImplementedError

    def kwargs(self, arrays: tuple[np.ndarray, ...], num_data: int | None) -> dict[str, int]:
        """Keyword arguments of the objective at every step of the epoch (set sizes)."""
        raise NotImplementedError

    def divisor(
        self, arrays: tuple[np.ndarray, ...], batch_size: int, num_data: int | None
    ) -> float:
        """What a step's loss is divided by to report it per example."""
        raise NotImplementedError

    def example(self, data: Any, batch_size: int) -> tuple[np.ndarray, ...]:
        """The objective's arguments for one step on the first rows of ``data``: what a
        trainer traces once to find the parameters."""
        raise NotImplementedError

    def batch(
        self, batch: Any, num_data: int | None
    ) -> tuple[tuple[np.ndarray, ...], dict[str, int], float]:
        """A step's ``(args, kwargs, divisor)`` for a batch given as it is (``Trainer.step``)."""
        raise NotImplementedError


def _as_tuple(data: Any) -> tuple[Any, ...]:
    """Several arrays are a tuple or a dict (its values, in order); anything else (an
    array, a nested list) is one array."""
    if isinstance(data, dict):
        return tuple(data.values())
    return data if isinstance(data, tuple) else (data,)


def argument_names(data: Any) -> tuple[str, ...] | None:
    """The keyword names of data given as a dict of arrays (``None`` for positional data).

    Raises:
        DataError: An empty dict or a key that is not a valid identifier.
    """
    if not isinstance(data, dict):
        return None
    if not data:
        raise DataError("the training data is an empty dict; pass {'x': x, ...}")
    bad = [k for k in data if not (isinstance(k, str) and k.isidentifier())]
    if bad:
        raise DataError(
            f"data dict keys must be the model's argument names (identifiers), got {bad!r}"
        )
    return tuple(data)


@dataclass(frozen=True)
class Minibatches(Schedule):
    """Shuffled minibatches, one pass over the data per epoch (the last partial batch dropped).

    Data is an array ``(N, D, ...)``, or several arrays with the same ``N`` (several
    observed arrays per example, batched alike; then ``(N,)`` is allowed, one value per
    example): a tuple, passed to model and guide positionally in that order, or a dict,
    passed by keyword (``{"x": x, "s": s}`` calls ``model(x=..., s=...)``). A trainer's
    per-batch transform applies to the first. With the trainer's ``num_data`` the objective
    also gets ``num_data=N``, so its loss is an estimate for the whole set and is reported
    divided by ``N``; otherwise it is per batch, divided by the batch size.

    Args:
        labels: Positions of integer arrays in a tuple of data arrays (e.g. ``(1,)`` for
            ``(x, y)`` with class labels ``y``), passed as integers instead of floats; their
            values must be whole numbers >= 0.
        num_classes: If given, every label must be below it (checked once over the whole
            data: inside a compiled step an out-of-range label would one-hot to zeros).
    """

    labels: tuple[int, ...] = ()
    num_classes: int | None = None

    def arrays(self, data, batch_size):
        parts = _as_tuple(data)
        argument_names(data)
        if not parts:
            raise DataError("the training data is an empty tuple; pass x, or (x, c, ...)")
        arrays = tuple(self._check(a, i, data, min_rows=batch_size) for i, a in enumerate(parts))
        if len({len(a) for a in arrays}) > 1:
            raise DataError(
                f"the arrays of the data have different numbers of rows "
                f"{[len(a) for a in arrays]}; every array needs one row per example"
            )
        return arrays

    def gather(self, arrays):
        return tuple((a, 0) for a in range(len(arrays)))

    def indices(self, arrays, batch_size, *, seed, epoch):
        return (minibatch_indices(len(arrays[0]), batch_size, seed=seed, epoch=epoch),)

    def kwargs(self, arrays, num_data):
        return {} if num_data is None else {"num_data": int(num_data)}

    def divisor(self, arrays, batch_size, num_data):
        return float(num_data or batch_size)

    def example(self, data, batch_size):
        parts = _as_tuple(data)
        return tuple(self._check(a, i, data)[:batch_size] for i, a in enumerate(parts))

    def batch(self, batch, num_data):
        parts = _as_tuple(batch)
        args = tuple(self._check(a, i, batch) for i, a in enumerate(parts))
        if len({len(a) for a in args}) > 1:
            raise DataError(
                f"the arrays of the batch have different numbers of rows {[len(a) for a in args]}"
            )
        return args, self.kwargs(args, num_data), float(num_data or len(args[0]))

    def _check(self, a: Any, i: int, data: Any, min_rows: int = 1) -> np.ndarray:
        """Array ``i`` of ``data``: ``(N, features...)`` alone, ``(N, ...)`` among several."""
        several = isinstance(data, tuple | dict) and len(data) > 1
        if isinstance(data, dict):
            name = f"data[{list(data)[i]!r}]"
        else:
            name = f"data[{i}]" if isinstance(data, tuple) and len(data) > 1 else "x"
        a = check_training_array(
            a, min_rows=min_rows, name=name, labels=i in self.labels, min_ndim=1 if several else 2
        )
        if (
            i in self.labels
            and self.num_classes is not None
            and a.size
            and a.max() >= self.num_classes
        ):
            raise DataError(
                f"{name} holds class labels 0..{self.num_classes - 1}, but some are "
                f"{a.max():g}; map the classes to indices below {self.num_classes}"
            )
        return a


@dataclass(frozen=True)
class LabelledBatches(Schedule):
    """Partially labelled data ``(x, y)``, ``y = -1`` (``MISSING``) where unlabelled.

    Every step takes one unlabelled batch of the trainer's ``batch_size`` and one labelled
    batch of ``labelled_batch_size``; an epoch is one pass over the unlabelled examples,
    cycling the (small) labelled set (:func:`ppgen.data.semi_supervised_indices`). The
    objective is called ``objective(model, guide, x_l, y_l, x_u, num_labelled=N_l,
    num_unlabelled=N_u)`` and its loss, an estimate for the whole set, is reported per
    example (divided by ``N_l + N_u``).

    Args:
        num_classes: Number of classes (labels are checked against it; every class needs
            at least one labelled example).
        labelled_batch_size: Labelled examples per step (default: the trainer's batch size).

    The set sizes come from the labels, so a trainer's ``num_data`` is refused.

    Raises:
        ConfigError: Fewer than two classes or a non-positive batch size.
    """

    num_classes: int
    labelled_batch_size: int | None = None

    inputs = (0, 2)  # x_l and x_u
    labels = (1,)
    takes_num_data = False

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not (
            isinstance(self.num_classes, int | np.integer) and self.num_classes >= 2
        ):
            raise ConfigError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        size = self.labelled_batch_size
        if size is not None and (
            isinstance(size, bool) or not (isinstance(size, int | np.integer) and size >= 1)
        ):
            raise ConfigError(f"labelled_batch_size must be positive, got {size!r}")

    def _split(self, data: Any) -> tuple[Any, Any]:
        if not (isinstance(data, tuple | list) and len(data) == 2):
            raise DataError(
                "semi-supervised training needs (x, y) with y = -1 where unlabelled, got "
                f"{type(data).__name__}"
            )
        return data[0], data[1]

    def arrays(self, data, batch_size):
        x, y = self._split(data)
        x = check_training_array(x, min_rows=1, name="x")
        y = check_labels(y, n=len(x), num_classes=self.num_classes)
        n_l = int(np.sum(y != MISSING))
        if n_l < self.num_classes:
            raise ConfigError(
                f"{n_l} labelled examples, fewer than the {self.num_classes} classes; label "
                "at least one example per class"
            )
        return x, y

    def gather(self, arrays):
        return ((0, 0), (1, 0), (0, 1))  # x[lab], y[lab], x[unl]

    def indices(self, arrays, batch_size, *, seed, epoch):
        return semi_supervised_indices(
            arrays[1],
            batch_size=batch_size,
            labelled_batch_size=self.labelled_batch_size or batch_size,
            seed=seed,
            epoch=epoch,
        )

    def kwargs(self, arrays, num_data):
        n_l = int(np.sum(arrays[1] != MISSING))
        return {"num_labelled": n_l, "num_unlabelled": len(arrays[1]) - n_l}

    def divisor(self, arrays, batch_size, num_data):
        return float(len(arrays[1]))

    def example(self, data, batch_size):
        """``(x_l, y_l, x_u)`` from the first rows; ``data`` may be ``x`` alone (every row
        then serves as unlabelled, and the first as a labelled example of class 0)."""
        if isinstance(data, tuple | list):
            x, y = self._split(data)
            x = check_training_array(x, min_rows=1, name="x")
            y = check_labels(y, n=len(x), num_classes=self.num_classes)
        else:
            x = check_training_array(data, min_rows=1, name="x")
            y = np.full(len(x), MISSING, dtype=np.int64)
        lab, unl = np.flatnonzero(y != MISSING), np.flatnonzero(y == MISSING)
        size = self.labelled_batch_size or batch_size
        lab = lab[:size] if len(lab) else np.arange(1)
        unl = unl[:batch_size] if len(unl) else np.arange(min(batch_size, len(x)))
        return x[lab], np.maximum(y[lab], 0), x[unl]

    def batch(self, batch, num_data):
        if not (isinstance(batch, tuple | list) and len(batch) == 3):
            raise DataError("a semi-supervised step takes the triple (x_l, y_l, x_u)")
        x_l = check_training_array(batch[0], min_rows=1, name="x_l")
        x_u = check_training_array(batch[2], min_rows=1, name="x_u")
        y_l = check_labels(batch[1], n=len(x_l), num_classes=self.num_classes, name="y_l")
        if (y_l == MISSING).any():
            raise DataError("the labelled batch y_l has missing (-1) labels")
        kwargs = {"num_labelled": len(x_l), "num_unlabelled": len(x_u)}
        return (x_l, y_l, x_u), kwargs, float(len(x_l) + len(x_u))
