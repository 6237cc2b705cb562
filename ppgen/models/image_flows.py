"""Backend-free pieces of the image flows, written once in numpy for both backends.

Shapes and checks of ``(C, H, W)`` events (Dinh et al. 2016's squeeze), the check of 8-bit
data before uniform dequantisation (Theis et al. 2016), the initial weights of Glow's LU-
parametrised 1x1 convolution (Kingma & Dhariwal 2018, section 3.2) and of the convolutional
conditioners, all drawn from a seed with numpy so both backends start from the same numbers.

Bits/dim on 8-bit data (RealNVP, Glow): with ``v = (x + u) / 256``, ``u ~ U[0, 1)^D``,
``-log P(x) <= E_u[-log p(v)] + D log 256``, and the figure reported is
``(-log p(v) + D log 256) / (D log 2)`` (:func:`dequantized_bits_per_dim`). The backends'
``Dequantize`` transform counts the ``D log 256`` as its log-Jacobian, so the flow's own
``log_prob`` of ``x + u`` is already in the 8-bit space and ``ppgen.metrics.bits_per_dim``
gives the standard figure from it directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ppgen.errors import ConfigError, DataError
from ppgen.metrics import bits_per_dim

__all__ = [
    "LEVELS",
    "check_8bit",
    "check_image_shape",
    "conv_weights",
    "dequantized_bits_per_dim",
    "lu_weights",
    "squeeze_shape",
]

LEVELS = 256  # 8-bit data: values 0..255


def check_image_shape(shape: Sequence[int], what: str = "image flow") -> tuple[int, int, int]:
    """Check an event shape ``(C, H, W)`` of positive sizes; return it as ints.

    Raises:
        ConfigError: Not three positive sizes.
    """
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or min(out) < 1:
        raise ConfigError(
            f"an {what} takes image events of shape (C, H, W), got {tuple(shape)!r}; reshape "
            "flat data, e.g. MNIST's 784 pixels as (1, 28, 28)"
        )
    return out  # type: ignore[return-value]


def squeeze_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """The event shape after a 2x2 squeeze, ``(C, H, W) -> (4C, H/2, W/2)`` (Dinh et al. 2016).

    Raises:
        DataError: Not ``(C, H, W)``, or an odd height or width.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise DataError(f"Squeeze takes images (..., C, H, W), got event shape {shape}")
    c, h, w = shape
    if h % 2 or w % 2:
        raise DataError(
            f"Squeeze needs an even height and width, got (C, H, W) = {shape}; pad or crop "
            "the images (28 -> 14 -> 7 allows two squeezes)"
        )
    return 4 * c, h // 2, w // 2


def check_8bit(x: np.ndarray) -> None:
    """Refuse data that are not 8-bit pixel values (integers ``0..255``), in one line.

    Args:
        x: The data, any shape, integer or float dtype.

    Raises:
        DataError: Non-numeric, NaN, non-integer or outside ``0..255`` (e.g. pixels scaled to
            ``[0, 1]``: multiply by 255 and round first).
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.size == 0:
        raise DataError(f"Dequantize takes 8-bit pixel values 0..255, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError("Dequantize takes 8-bit pixel values 0..255, got NaN or Inf")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > LEVELS - 1 or (x.dtype.kind == "f" and np.any(x != np.round(x))):
        hint = "; pixels in [0, 1]? use round(255 * x)" if hi <= 1 else ""
        raise DataError(
            f"Dequantize takes 8-bit pixel values (integers 0..255), got values in "
            f"[{lo:g}, {hi:g}]{'' if x.dtype.kind != 'f' else ' (not all integers)'}{hint}"
        )


def dequantized_bits_per_dim(log_p_unit: float | np.ndarray, dim: int) -> float | np.ndarray:
    """Bits/dim in the 8-bit space from the log-density of ``v = (x + u) / 256`` in
    ``[0, 1)^D`` (nats): ``(-log p(v) + D log 256) / (D log 2)`` (Theis et al. 2016; the
    RealNVP and Glow papers' figure).

    A flow whose transforms end with ``Dequantize`` already includes the ``D log 256``: use
    ``ppgen.metrics.bits_per_dim(-log_prob, dim)`` on its ``log_prob`` of ``x + u``.
    """
    return bits_per_dim(-np.asarray(log_p_unit) + dim * math.log(LEVELS), dim)


def lu_weights(channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Glow's initial 1x1 convolution: a random rotation ``W = P L (U + diag(sign * exp(log_s)))``
    (Kingma & Dhariwal 2018, section 3.2), drawn from ``seed``.

    Returns:
        ``permutation`` (C, C) (0/1), ``lower`` (C, C) (strictly lower part used),
        ``upper`` (C, C) (strictly upper part used), ``sign_s`` (C,) (+-1), ``log_s`` (C,).

    Raises:
        ConfigError: ``channels < 1``.
    """
    c = int(channels)
    if c < 1:
        raise ConfigError(f"channels must be a positive integer, got {channels!r}")
    rng = np.random.default_rng(seed)
    w, _ = np.linalg.qr(rng.standard_normal((c, c)))
    p, lower, upper = _lu(w)
    diag = np.diag(upper)
    return {
        "permutation": p,
        "lower": np.tril(lower, -1),
        "upper": np.triu(upper, 1),
        "sign_s": np.sign(diag),
        "log_s": np.log(np.abs(diag)),
    }


def _lu(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``a = P L U`` by Gaussian elimination with partial pivoting (``scipy.linalg.lu``'s
    convention), for the small matrices of a 1x1 convolution."""
    n = len(a)
    u = a.astype(np.float64).copy()
    lower = np.eye(n)
    perm = np.arange(n)
    for k in range(n - 1):
        pivot = k + int(np.argmax(np.abs(u[k:, k])))
        u[[k, pivot]] = u[[pivot, k]]
        lower[[k, pivot], :k] = lower[[pivot, k], :k]
        perm[[k, pivot]] = perm[[pivot, k]]
        lower[k + 1 :, k] = u[k + 1 :, k] / u[k, k]
        u[k + 1 :] -= lower[k + 1 :, k, None] * u[k]
    p = np.zeros((n, n))
    p[perm, np.arange(n)] = 1.0
    return p, lower, np.triu(u)


def conv_weights(
    channels: Sequence[int], seed: int = 0, kernel_size: int = 3
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial weights of a stack of ``kernel_size`` convolutions in torch's layout, weight
    ``(out, in, kh, kw)``, bias ``(out,)``: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``
    as ``torch.nn.Conv2d``'s default, drawn by numpy from ``seed``; the **last** layer zero,
    so a coupling built on it starts as the identity (Glow's zero initialisation).

    Args:
        channels: Channels ``(in, hidden..., out)`` of the successive convolutions.
        seed: Seed of numpy's generator.
        kernel_size: Odd kernel size.

    Raises:
        ConfigError: Fewer than two sizes, a size below 1, or an even kernel size.
    """
    sizes = [int(c) for c in channels]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"conv channels must be (in, ..., out) positive, got {tuple(sizes)}")
    if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
        raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size!r}")
    k = int(kernel_size)
    rng = np.random.default_rng(seed)
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if i == len(sizes) - 2:
            out.append((np.zeros((n_out, n_in, k, k)), np.zeros(n_out)))
            continue
        bound = 1.0 / math.sqrt(n_in * k * k)
        weight = rng.uniform(-bound, bound, (n_out, n_in, k, k))
        out.append((weight, rng.uniform(-bound, bound, n_out)))
    return out
