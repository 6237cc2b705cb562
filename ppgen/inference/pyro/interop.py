"""Numpy in, numpy out: calling a Pyro model's methods with explicit, seeded randomness.

Pyro draws from torch's global generator. :class:`GlobalRNG` swaps a run's own generator
state in around a block and restores the caller's after, so training and evaluation never
shift a user's random stream; :func:`draw` and :func:`compute` are what backend-free code
(``ppgen.runs``, the recipes) calls to sample from, encode or decode a trained model: one
function per backend, mirrored by ``ppgen.inference.numpyro.interop``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["GlobalRNG", "compute", "draw", "seeded"]


class GlobalRNG:
    """Swap a generator state into torch's global generator for a block; restore on exit.

    ``with GlobalRNG(state) as rng: ...`` runs the block on ``state``; afterwards
    ``rng.state`` holds the advanced state (to carry on from) and the caller's global state
    is back as it was.
    """

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def __enter__(self) -> GlobalRNG:
        self._outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        return self

    def __exit__(self, *exc: object) -> None:
        self.state = torch.get_rng_state()
        torch.set_rng_state(self._outer)

    @classmethod
    def from_seed(cls, seed: int) -> GlobalRNG:
        """A fresh generator state seeded with ``seed``."""
        return cls(torch.Generator().manual_seed(int(seed)).get_state())


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's global generator seeded with ``seed``, then restore the
    caller's generator (nothing outside the block sees the draws)."""
    with GlobalRNG.from_seed(seed):
        yield


def _tensor(value: Any) -> Any:
    """numpy arrays become tensors: integers as ``long`` (labels), the rest in torch's
    default float dtype; other values pass through."""
    if isinstance(value, np.ndarray):
        array = value
        if array.dtype.kind in "iub":
            return torch.as_tensor(array, dtype=torch.long)
        return torch.as_tensor(array, dtype=torch.get_default_dtype())
    return value


def _numpy(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, tuple):
        return tuple(_numpy(v) for v in value)
    return value


def compute(method: Callable, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` without gradients, numpy arrays in and out.

    For deterministic methods of a trained model (``encode``, ``decode``, ``classify``,
    ``analogies``); tuples of outputs come back as tuples of arrays.
    """
    with torch.no_grad():
        out = method(*(_tensor(a) for a in args), **{k: _tensor(v) for k, v in kwargs.items()})
    return _numpy(out)


def draw(method: Callable, *args: Any, seed: int, **kwargs: Any) -> Any:
    """:func:`compute` for a method that draws (``sample``, ``reconstruct``): its draws come
    from torch's generator seeded with ``seed``; the caller's generator is left as it was.

    The NumPyro twin passes ``jax.random.PRNGKey(seed)`` as the method's first argument.
    """
    with seeded(seed):
        return compute(method, *args, **kwargs)
