"""The char-RNN's backend-free pieces, written once in numpy for both backends.

Karpathy 2015 ("The Unreasonable Effectiveness of Recurrent Neural Networks"): characters
as integer ids ``0..V-1`` into stacked LSTMs and a linear read-out of ``V`` logits per
position. Here: the option checks (:func:`check_charrnn`), the seeded initial weights in
torch's ``nn.LSTM`` layout (:func:`charrnn_initial_weights`, the same numbers on both
backends, so a seed names one network), and the one-line checks of what a user passes in
(token ids, temperature, the priming prefix).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ppgen.errors import ConfigError, DataError

__all__ = [
    "LSTM_PARAMS",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "charrnn_initial_weights",
    "check_charrnn",
    "check_prefix",
    "check_temperature",
    "check_tokens",
    "lstm_keys",
]


# torch's order of one layer's parameters; the four gates are stacked (i, f, g, o) in each.
LSTM_PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def check_charrnn(
    vocab_size: int, hidden: int, layers: int, embedding: int | None
) -> tuple[int, int, int, int | None]:
    """Check a char-RNN's sizes; return them as ints.

    Args:
        vocab_size: ``V``, the number of distinct token ids (at least 2).
        hidden: LSTM units per layer.
        layers: Stacked LSTM layers.
        embedding: Width of the learned input embedding, or ``None`` for one-hot inputs.

    Raises:
        ConfigError: A size that is not a positive integer, or fewer than 2 tokens.
    """
    vocab_size = _positive_int(vocab_size, "vocab_size")
    if vocab_size < 2:
        raise ConfigError(f"vocab_size must be at least 2, got {vocab_size}")
    hidden = _positive_int(hidden, "hidden")
    layers = _positive_int(layers, "layers")
    if embedding is not None:
        embedding = _positive_int(embedding, "embedding (or None for one-hot inputs)")
    return vocab_size, hidden, layers, embedding


def lstm_keys(layers: int) -> list[str]:
    """torch ``nn.LSTM``'s state-dict keys for ``layers`` layers, layer by layer:
    ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``weight_ih_l1``, ..."""
    return [f"{kind}_l{k}" for k in range(layers) for kind in LSTM_PARAMS]


def charrnn_initial_weights(
    vocab_size: int, hidden: int, layers: int, embedding: int | None, seed: int
) -> dict[str, np.ndarray]:
    """A char-RNN's initial weights, float64 numpy in torch layout, from numpy's generator.

    torch's own initialisation, drawn here so that both backends build the same network
    from the same seed: LSTM and read-out weights ``U(-1/sqrt(H), 1/sqrt(H))``
    (``nn.LSTM``, ``nn.Linear`` with ``in = H``), embedding ``N(0, 1)`` (``nn.Embedding``),
    and the learned initial input ``start`` at zero.

    Keys: ``embedding.weight (V, E)`` (only with an embedding), ``start (E,)`` (``E = V``
    for one-hot inputs), ``lstm.weight_ih_l{k} (4H, in_k)``, ``lstm.weight_hh_l{k} (4H, H)``,
    ``lstm.bias_ih_l{k} (4H,)``, ``lstm.bias_hh_l{k} (4H,)``, ``output.weight (V, H)``,
    ``output.bias (V,)``.

    Raises:
        ConfigError: Bad sizes (:func:`check_charrnn`).
    """
    vocab_size, hidden, layers, embedding = check_charrnn(vocab_size, hidden, layers, embedding)
    rng = np.random.default_rng(seed)
    bound = 1.0 / math.sqrt(hidden)
    input_size = embedding or vocab_size
    out: dict[str, np.ndarray] = {}
    if embedding:
        out["embedding.weight"] = rng.standard_normal((vocab_size, embedding))
    out["start"] = np.zeros(input_size)
    for k in range(layers):
        fan_in = input_size if k == 0 else hidden
        shapes = {"weight_ih": (4 * hidden, fan_in), "weight_hh": (4 * hidden, hidden)}
        shapes |= {"bias_ih": (4 * hidden,), "bias_hh": (4 * hidden,)}
        for kind in LSTM_PARAMS:
            out[f"lstm.{kind}_l{k}"] = rng.uniform(-bound, bound, shapes[kind])
    out["output.weight"] = rng.uniform(-bound, bound, (vocab_size, hidden))
    out["output.bias"] = rng.uniform(-bound, bound, (vocab_size,))
    return out


MIN_TEMPERATURE = 1e-6
MAX_TEMPERATURE = 1e6


def check_temperature(temperature: Any) -> float:
    """Return the sampling temperature as a float.

    The float32 logits are divided by it, so it must lie in ``[MIN_TEMPERATURE,
    MAX_TEMPERATURE]``: a smaller one underflows to 0 in float32 (the division then gives
    NaN, where ``1e-6`` already draws greedily), a larger one leaves every logit about 0
    (uniform draws) and overflows float32 on the way.

    Raises:
        ConfigError: Not a finite number in ``[1e-6, 1e6]`` (``T -> 0`` is greedy decoding:
            ask for ``1e-6``).
    """
    bad = isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
    if bad or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE:
        raise ConfigError(
            f"temperature must be a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} "
            f"(the float32 logits are divided by it), got {temperature!r}; use e.g. 0.01 for "
            f"near-greedy samples, {MIN_TEMPERATURE:g} for greedy ones"
        )
    return float(temperature)


def check_tokens(x: np.ndarray, vocab_size: int) -> np.ndarray:
    """Check token ids; return them as int64.

    Args:
        x: Ids ``(..., T)``, integers (or floats holding integers, as a trainer that casts
            data to the parameters' dtype passes them) in ``0..vocab_size - 1``.
        vocab_size: ``V``.

    Raises:
        DataError: Booleans, non-integral values, no time axis, or ids outside the
            vocabulary (named, with the vocabulary size).
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise DataError(f"token ids must have a time axis (..., T), got shape {x.shape}")
    if x.dtype.kind not in "iuf":
        raise DataError(f"token ids must be integers 0..{vocab_size - 1}, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x))):
        raise DataError(f"token ids must be integers 0..{vocab_size - 1}, got non-integer values")
    outside = (x < 0) | (x >= vocab_size)
    if np.any(outside):
        bad = sorted({int(v) for v in x[outside].ravel()[:5]})
        raise DataError(
            f"token ids {bad} are outside the vocabulary of {vocab_size} tokens "
            f"(ids 0..{vocab_size - 1}); encode the text with the model's vocabulary"
        )
    return x.astype(np.int64)


def check_prefix(prefix_shape: tuple[int, ...], batch: tuple[int, ...], length: int) -> int:
    """Check a priming prefix's shape against the samples'; return its length ``P``.

    Args:
        prefix_shape: The prefix's shape, ``(*batch, P)``.
        batch: The samples' batch shape (the noise's, less time and noise axes).
        length: ``T``, the sampled sequences' length (the noise's time axis).

    Raises:
        DataError: The prefix's batch shape differs from the noise's.
        ConfigError: A prefix longer than the sequences to sample.
    """
    prefix_shape, batch = tuple(prefix_shape), tuple(batch)
    if len(prefix_shape) < 1 or prefix_shape[:-1] != batch:
        raise DataError(
            f"prefix must have shape (*batch, P) = {(*batch, 'P')} like the noise's batch, "
            f"got {prefix_shape}"
        )
    if prefix_shape[-1] > length:
        raise ConfigError(
            f"prefix of length {prefix_shape[-1]} is longer than the {length} positions to "
            "sample (the noise's time axis is the whole length, prompt included)"
        )
    return int(prefix_shape[-1])
