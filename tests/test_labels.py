"""Partial labels: balanced subsets, validation of user labels, the mixed batch schedule."""

import numpy as np
import pytest

from ppgen.data import (
    MISSING,
    check_labels,
    labelled_subset,
    partial_labels,
    semi_supervised_indices,
)
from ppgen.errors import ConfigError, DataError


@pytest.fixture
def y():
    return np.random.default_rng(0).integers(0, 10, size=3000)


@pytest.mark.parametrize("n_labels", [10, 100, 600])
@pytest.mark.parametrize("seed", [0, 1])
def test_subset_is_class_balanced_and_seeded(y, n_labels, seed):
    idx = labelled_subset(y, n_labels, seed=seed)
    assert len(idx) == len(np.unique(idx)) == n_labels
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=10), n_labels // 10)
    np.testing.assert_array_equal(idx, labelled_subset(y, n_labels, seed=seed))
    assert not np.array_equal(idx, labelled_subset(y, n_labels, seed=seed + 7))


def test_partial_labels_keep_only_the_subset(y):
    p = partial_labels(y, 100, seed=3)
    kept = p != MISSING
    assert kept.sum() == 100
    np.testing.assert_array_equal(p[kept], y[kept])


@pytest.mark.parametrize(
    "labels, kwargs, message",
    [
        (np.array([0.0, 1.0, 2.0]), {}, "integers"),
        (np.array(["cat", "dog"]), {}, "integers"),
        (np.array([True, False]), {}, "integers"),
        (np.array([0, 1, 10]), {}, "outside 0..9"),
        (np.array([0, -2]), {}, "outside 0..9"),
        (np.array([0, 1]), {"n": 3}, "3 examples"),
        (np.array([[0, 1]]), {}, "shape"),
    ],
)
def test_bad_labels_are_clear_errors(labels, kwargs, message):
    with pytest.raises(DataError, match=message):
        check_labels(labels, **kwargs)


def test_missing_marker_is_accepted():
    np.testing.assert_array_equal(check_labels(np.array([MISSING, 3, MISSING])), [-1, 3, -1])


@pytest.mark.parametrize("n_labels", [5, 95])
def test_subset_size_must_cover_every_class_evenly(y, n_labels):
    with pytest.raises(ConfigError, match="multiple of 10"):
        labelled_subset(y, n_labels)


@pytest.mark.parametrize("batch, lbatch", [(100, 10), (64, 32)])
def test_schedule_covers_unlabelled_once_and_cycles_labelled(y, batch, lbatch):
    p = partial_labels(y, 100, seed=0)
    lab, unl = semi_supervised_indices(
        p, batch_size=batch, labelled_batch_size=lbatch, seed=0, epoch=2
    )
    steps = (p == MISSING).sum() // batch
    assert lab.shape == (steps, lbatch) and unl.shape == (steps, batch)
    assert np.all(p[unl] == MISSING) and np.all(p[lab] != MISSING)
    assert len(np.unique(unl)) == unl.size  # each unlabelled example at most once per epoch
    counts = np.bincount(lab.ravel(), minlength=len(p))[p != MISSING]
    assert counts.max() - counts.min() <= 1  # labelled examples seen evenly
    again = semi_supervised_indices(
        p, batch_size=batch, labelled_batch_size=lbatch, seed=0, epoch=2
    )
    np.testing.assert_array_equal(lab, again[0])
    other = semi_supervised_indices(
        p, batch_size=batch, labelled_batch_size=lbatch, seed=0, epoch=3
    )
    assert not np.array_equal(unl, other[1])


def test_labelled_batch_is_at_most_the_labelled_set(y):
    p = partial_labels(y, 20, seed=0)
    lab, _ = semi_supervised_indices(p, batch_size=100, labelled_batch_size=50, seed=0, epoch=0)
    assert lab.shape[1] == 20
    assert all(len(np.unique(row)) == 20 for row in lab)  # every label once per step


def test_schedule_needs_labels_and_enough_unlabelled(y):
    with pytest.raises(ConfigError, match="no labelled"):
        semi_supervised_indices(
            np.full(50, MISSING), batch_size=10, labelled_batch_size=5, seed=0, epoch=0
        )
    with pytest.raises(ConfigError, match="fewer than one batch"):
        semi_supervised_indices(
            np.r_[np.arange(20) % 10, [MISSING] * 5],
            batch_size=10,
            labelled_batch_size=5,
            seed=0,
            epoch=0,
        )
    with pytest.raises(ConfigError, match="every example is labelled"):
        semi_supervised_indices(
            np.arange(20) % 10, batch_size=1, labelled_batch_size=5, seed=0, epoch=0
        )
