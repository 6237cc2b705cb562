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
import numbers
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ppgen.errors import ConfigError, DataError
from ppgen.metrics import bits_per_dim
from ppgen.models.masks import channel_mask, checkerboard_mask

__all__ = [
    "CONDITIONERS",
    "GLOW_KERNELS",
    "LEVELS",
    "Layer",
    "check_8bit",
    "check_conditioner",
    "conditioner_name",
    "check_levels",
    "check_image_shape",
    "conv_weights",
    "dequantized_bits_per_dim",
    "glow_plan",
    "lu_weights",
    "realnvp_plan",
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


def check_levels(levels: object) -> int:
    """``levels`` as an int if it is a number of grey levels ``L >= 2`` (256 for 8-bit data).

    Raises:
        ConfigError: Not an integer >= 2.
    """
    if not (isinstance(levels, numbers.Integral) and not isinstance(levels, bool) and levels >= 2):
        raise ConfigError(f"Dequantize levels must be an integer >= 2 (256: 8-bit), got {levels!r}")
    return int(levels)


def check_8bit(x: np.ndarray, levels: int = LEVELS) -> None:
    """Refuse data that are not pixel values of ``levels`` grey levels (integers
    ``0..levels - 1``; by default 8-bit, ``0..255``), in one line.

    Args:
        x: The data, any shape, integer or float dtype.
        levels: The number of grey levels ``L``.

    Raises:
        DataError: Non-numeric, NaN, non-integer or outside ``0..L - 1`` (e.g. pixels scaled
            to ``[0, 1]``: multiply by ``L - 1`` and round first).
    """
    top = check_levels(levels) - 1
    what = "8-bit pixel values" if top == LEVELS - 1 else f"pixel values of {top + 1} levels"
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" or x.size == 0:
        raise DataError(f"Dequantize takes {what} 0..{top}, got dtype {x.dtype}")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise DataError(f"Dequantize takes {what} 0..{top}, got NaN or Inf")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi > top or (x.dtype.kind == "f" and np.any(x != np.round(x))):
        hint = f"; pixels in [0, 1]? use round({top} * x)" if hi <= 1 else ""
        raise DataError(
            f"Dequantize takes {what} (integers 0..{top}), got values in "
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
    channels: Sequence[int], seed: int = 0, kernel_size: int | Sequence[int] = 3
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Initial weights of a stack of convolutions in torch's layout, weight
    ``(out, in, kh, kw)``, bias ``(out,)``: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``
    as ``torch.nn.Conv2d``'s default, drawn by numpy from ``seed``; the **last** layer zero,
    so a coupling built on it starts as the identity (Glow's zero initialisation).

    Args:
        channels: Channels ``(in, hidden..., out)`` of the successive convolutions.
        seed: Seed of numpy's generator.
        kernel_size: Odd kernel size of every convolution, or one per convolution
            (``len(channels) - 1`` of them; Glow's conditioner is ``(3, 1, 3)``).

    Raises:
        ConfigError: Fewer than two sizes, a size below 1, an even kernel size, or a number
            of kernel sizes other than the number of convolutions.
    """
    sizes = [int(c) for c in channels]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"conv channels must be (in, ..., out) positive, got {tuple(sizes)}")
    n = len(sizes) - 1
    kernels = [kernel_size] * n if isinstance(kernel_size, numbers.Integral) else list(kernel_size)
    if len(kernels) != n:
        raise ConfigError(f"{n} convolutions need {n} kernel sizes, got {tuple(kernels)}")
    for k in kernels:
        if int(k) < 1 or int(k) % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {k!r}")
    rng = np.random.default_rng(seed)
    out = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        k = int(kernels[i])
        if i == n - 1:
            out.append((np.zeros((n_out, n_in, k, k)), np.zeros(n_out)))
            continue
        bound = 1.0 / math.sqrt(n_in * k * k)
        weight = rng.uniform(-bound, bound, (n_out, n_in, k, k))
        out.append((weight, rng.uniform(-bound, bound, n_out)))
    return out


# The conditioner networks of the image couplings (``from_plan``'s ``conditioner``):
# ``"resnet"``, RealNVP's residual net (``ConvNet``), and ``"glow"``, Glow's
# 3x3 -> 1x1 -> 3x3 net (``GlowNet``).
CONDITIONERS = ("resnet", "glow")
# Glow's conditioner: a 3x3, a 1x1 and a zero-initialised 3x3 convolution (Kingma &
# Dhariwal 2018, section 3.3 and their code's ``f``).
GLOW_KERNELS = (3, 1, 3)


def conditioner_name(conditioner: str) -> str:
    """``conditioner`` if it is one of :data:`CONDITIONERS`.

    Raises:
        ConfigError: An unknown conditioner.
    """
    if conditioner not in CONDITIONERS:
        raise ConfigError(
            f"unknown conditioner {conditioner!r}; choose one of {', '.join(CONDITIONERS)}"
        )
    return conditioner


def check_conditioner(conditioner: str, blocks: int | None, default: int = 1) -> int:
    """The residual blocks of an image flow's conditioners: ``blocks`` (``default`` when
    ``None``) for ``"resnet"``; ``0`` for ``"glow"``, which has none.

    Raises:
        ConfigError: An unknown conditioner, a negative ``blocks``, or ``blocks`` given for
            ``"glow"``.
    """
    if conditioner_name(conditioner) == "glow":
        if blocks is not None:
            raise ConfigError(
                "blocks sets the residual blocks of the resnet conditioner; Glow's "
                "(3x3 -> 1x1 -> 3x3) has none: drop blocks or choose conditioner='resnet'"
            )
        return 0
    blocks = default if blocks is None else blocks
    if int(blocks) < 0:
        raise ConfigError(f"blocks must be a non-negative integer, got {blocks!r}")
    return int(blocks)


class Layer(NamedTuple):
    """One layer of an image flow's plan, read alike by both backends' builders.

    ``kind`` is ``"coupling"`` (an affine coupling with ``mask`` and a conditioner net,
    ``ConvNet`` or ``GlowNet`` as ``from_plan`` is told, drawn from ``seed``),
    ``"actnorm"``, ``"conv1x1"`` (drawn from ``seed``), ``"squeezed"`` or ``"factor_out"``
    (``parts`` run at half resolution, or on the first ``keep`` channels). ``shape`` is the
    event ``(C, H, W)`` the layer sees; ``parts`` are in noise-to-data order, as the plan
    itself.
    """

    kind: str
    shape: tuple[int, int, int]
    mask: np.ndarray | None = None
    seed: int = 0
    keep: int = 0
    parts: tuple[Layer, ...] = ()


def _seed_stream(seed: int) -> Iterator[int]:
    """Independent seeds, one per network, in construction order (numpy's ``spawn``)."""
    sequence = np.random.SeedSequence(int(seed))
    while True:
        yield int(sequence.spawn(1)[0].generate_state(1)[0])


def _check_scales(shape: tuple[int, int, int], scales: int, steps: int, least: int) -> None:
    if isinstance(scales, bool) or not isinstance(scales, numbers.Integral) or scales < least:
        raise ConfigError(f"scales must be an integer >= {least}, got {scales!r}")
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    _, h, w = shape
    if h % 2**scales or w % 2**scales:
        raise ConfigError(
            f"{scales} scales halve the height and width {scales} times, so they must be "
            f"multiples of {2**scales}; got {h}x{w} (28 -> 14 -> 7 allows two)"
        )


def _reverse(data_to_noise: list[Layer]) -> tuple[Layer, ...]:
    return tuple(reversed(data_to_noise))


def realnvp_plan(
    event_shape: Sequence[int], *, scales: int = 2, steps: int = 3, seed: int = 0
) -> tuple[Layer, ...]:
    """RealNVP's multi-scale architecture (Dinh et al. 2016, section 3.6), in noise-to-data
    order. Data to noise, at each scale: ``steps`` checkerboard couplings (alternating),
    squeeze, ``steps`` channel couplings (alternating), factor out half the channels, the
    other half going on to the next scale; after ``scales`` scales, ``steps + 1``
    checkerboard couplings (the paper: 3, 3 and 4).

    Raises:
        ConfigError: Not ``(C, H, W)``, ``scales < 0``, ``steps < 1``, or a height or width
            not a multiple of ``2**scales``.
    """
    shape = check_image_shape(event_shape, "image flow (RealNVP)")
    _check_scales(shape, scales, steps, 0)
    seeds = _seed_stream(seed)

    def coupling(mask: np.ndarray) -> Layer:
        return Layer("coupling", tuple(mask.shape), mask=mask, seed=next(seeds))

    def level(shape: tuple[int, int, int], remaining: int) -> tuple[Layer, ...]:
        if remaining == 0:
            return _reverse(
                [coupling(checkerboard_mask(shape, bool(i % 2))) for i in range(steps + 1)]
            )
        board = [coupling(checkerboard_mask(shape, bool(i % 2))) for i in range(steps)]
        small = squeeze_shape(shape)
        channels = [coupling(channel_mask(small, bool(i % 2))) for i in range(steps)]
        keep = small[0] // 2
        rest = level((keep, *small[1:]), remaining - 1)
        inner = [*channels, Layer("factor_out", small, keep=keep, parts=rest)]
        return _reverse([*board, Layer("squeezed", shape, parts=_reverse(inner))])

    return level(shape, int(scales))


def glow_plan(
    event_shape: Sequence[int], *, scales: int = 2, steps: int = 4, seed: int = 0
) -> tuple[Layer, ...]:
    """Glow's multi-scale architecture (Kingma & Dhariwal 2018, figure 2), in noise-to-data
    order. Data to noise, at each of ``scales`` levels: squeeze, ``steps`` steps of flow
    (ActNorm, invertible 1x1 convolution, affine coupling on half the channels), and, but at
    the last level, factor out half the channels.

    Raises:
        ConfigError: Not ``(C, H, W)``, ``scales < 1``, ``steps < 1``, or a height or width
            not a multiple of ``2**scales``.
    """
    shape = check_image_shape(event_shape, "image flow (Glow)")
    _check_scales(shape, scales, steps, 1)
    seeds = _seed_stream(seed)

    def level(shape: tuple[int, int, int], remaining: int) -> tuple[Layer, ...]:
        small = squeeze_shape(shape)
        inner = []
        for _ in range(steps):
            inner.append(Layer("actnorm", small))
            inner.append(Layer("conv1x1", small, seed=next(seeds)))
            inner.append(Layer("coupling", small, mask=channel_mask(small), seed=next(seeds)))
        if remaining > 1:
            keep = small[0] // 2
            rest = level((keep, *small[1:]), remaining - 1)
            inner.append(Layer("factor_out", small, keep=keep, parts=rest))
        return (Layer("squeezed", shape, parts=_reverse(inner)),)

    return level(shape, int(scales))
