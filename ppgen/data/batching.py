"""Seeded randomness per epoch and minibatch indices, shared by both backends.

Every random choice of an epoch (the shuffle, dynamic binarization noise) comes from a
generator derived from ``(seed, epoch)`` alone, so a run resumed at epoch ``e`` repeats
exactly what an uninterrupted run would have done, and the Pyro and NumPyro trainers see
the same minibatches in the same order.
"""

from collections.abc import Iterator

import numpy as np

from ppgen.errors import ConfigError

__all__ = ["epoch_rng", "iterate_minibatches", "minibatch_indices", "seeded_rng"]


def _check_count(value: int, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seeded_rng(seed: int | np.random.Generator, *keys: int) -> np.random.Generator:
    """A generator from ``np.random.SeedSequence([seed, *keys])``; a generator passes through.

    Keys give independent streams for independent purposes (an epoch, a data file) under
    one user seed.

    Args:
        seed: a non-negative integer, or a ``np.random.Generator`` returned as is.
        *keys: non-negative integers mixed into the seed.

    Raises:
        ConfigError: if ``seed`` or a key is not a non-negative integer.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    for value in (seed, *keys):
        _check_count(value, "a seed", 0)
    return np.random.default_rng(np.random.SeedSequence([int(seed), *map(int, keys)]))


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The generator of epoch ``epoch`` of a run seeded with ``seed``.

    Built from ``np.random.SeedSequence([seed, epoch])``, so epochs get independent,
    reproducible streams.

    Raises:
        ConfigError: if ``seed`` or ``epoch`` is not a non-negative integer.
    """
    _check_count(seed, "seed", 0)
    _check_count(epoch, "epoch", 0)
    return seeded_rng(seed, epoch)


def _epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    # Both minibatch_indices and iterate_minibatches go through here, so they agree; the
    # generator is built even without shuffling so that bad seeds fail either way.
    rng = epoch_rng(seed, epoch)
    return rng.permutation(n) if shuffle else np.arange(n)


def minibatch_indices(
    n: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = True,
) -> np.ndarray:
    """The example indices of every minibatch of one epoch, one batch per row.

    With ``shuffle`` the order is the permutation drawn from ``epoch_rng(seed, epoch)``;
    the last ``n % batch_size`` examples of that order are dropped, so every row has the
    same length (the JAX trainer scans over the rows with static shapes). A different
    epoch drops different examples.

    Args:
        n: number of examples.
        batch_size: examples per batch, ``1 <= batch_size <= n``.
        seed: the run's seed.
        epoch: the epoch number.
        shuffle: permute the examples; otherwise take them in order.
        drop_last: must be True unless ``batch_size`` divides ``n``, since a rectangular
            array cannot hold a partial batch (use `iterate_minibatches` for that).

    Returns:
        An int32 array of shape ``(n // batch_size, batch_size)`` with distinct entries.

    Raises:
        ConfigError: for a bad ``n``, ``batch_size``, ``seed`` or ``epoch``, or a partial
            last batch with ``drop_last=False``.
    """
    n = _check_count(n, "n", 1)
    batch_size = _check_count(batch_size, "batch_size", 1)
    if batch_size > n:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {n} examples, so no full batch "
            f"remains; use batch_size <= {n}"
        )
    if not drop_last and n % batch_size:
        raise ConfigError(
            f"{n} examples do not split into batches of {batch_size}; pass drop_last=True "
            "or use iterate_minibatches for a partial last batch"
        )
    num_batches = n // batch_size
    order = _epoch_order(n, seed, epoch, shuffle)
    return order[: num_batches * batch_size].reshape(num_batches, batch_size).astype(np.int32)


def iterate_minibatches(
    x: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the minibatches of one epoch of ``x`` (batched along the first axis).

    The order is the one of `minibatch_indices` with the same arguments; with
    ``drop_last=True`` the batches are exactly ``x[minibatch_indices(...)[i]]``.

    Args:
        x: an array of examples, ``(N, ...)``.
        batch_size: examples per batch (at least 1).
        seed: the run's seed.
        epoch: the epoch number.
        shuffle: permute the examples; otherwise yield contiguous views of ``x``.
        drop_last: drop the last partial batch (then ``batch_size`` must be <= N).

    Yields:
        Arrays of shape ``(batch_size, ...)``; the last has fewer rows when ``drop_last``
        is False and ``batch_size`` does not divide N.

    Raises:
        ConfigError: for a bad ``batch_size``, ``seed`` or ``epoch``, or an empty ``x``.
    """
    n = _check_count(len(x), "the number of examples", 1)
    batch_size = _check_count(batch_size, "batch_size", 1)
    if drop_last and batch_size > n:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {n} examples and drop_last=True, "
            f"so there is no batch; use batch_size <= {n} or drop_last=False"
        )
    stop = n - n % batch_size if drop_last else n
    order = _epoch_order(n, seed, epoch, shuffle)
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        yield x[order[start:end]] if shuffle else x[start:end]
