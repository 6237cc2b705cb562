"""Masked and shifted convolutions of PixelCNN and Gated PixelCNN, in numpy for both backends.

Images are one grey channel ``(H, W)`` (or ``(1, H, W)``), generated in raster order: pixel
``(i, j)`` after every pixel of the rows above and the pixels left of it in its row.

- **PixelCNN** (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", section 3.4):
  a ``k x k`` convolution whose kernel is zero below the centre row and right of the centre
  in the centre row; mask **A** (the first layer) also zeroes the centre, mask **B** (later
  layers) keeps it (:func:`pixelcnn_mask`). Stacked, these never reach a triangle of pixels
  above and to the right: the *blind spot*.
- **Gated PixelCNN** (van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN
  Decoders", section 2.2): a *vertical* stack of ``(k // 2 + 1) x k`` convolutions padded so
  output row ``i`` sees input rows ``i - k // 2 .. i`` (all columns of the window), shifted
  down one row where it feeds the *horizontal* stack, whose ``1 x (k // 2 + 1)`` convolutions
  see the pixels left of (and, after the first layer, at) the current one in its row
  (:func:`vertical_kernel`, :func:`horizontal_mask`). Together they see every earlier pixel
  within the field: no blind spot.

Kernels are in torch's layout ``(out, in, kh, kw)``; paddings ``((top, bottom), (left,
right))``. Cached sampling runs the network on a fixed-size window of the image that holds
the receptive field of the next pixel (:func:`window_starts`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence

import numpy as np

from ppgen.errors import ConfigError, DataError

__all__ = [
    "Padding",
    "Plan",
    "check_grey_image_shape",
    "check_kernel_size",
    "check_noise_shape",
    "check_prefix_shape",
    "check_sizes",
    "gated_plan",
    "conv_initial_weights",
    "horizontal_mask",
    "horizontal_padding",
    "input_levels",
    "pixelcnn_mask",
    "pixelcnn_plan",
    "vertical_kernel",
    "vertical_padding",
    "window_starts",
]

Padding = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def check_grey_image_shape(image_shape: Sequence[int], what: str) -> tuple[int, int]:
    """Check a one-channel image shape ``(H, W)`` or ``(1, H, W)``; return ``(H, W)``.

    Only a single grey channel is supported (binarized or 8-bit grey MNIST): colour would
    need the R -> G -> B channel masks of van den Oord et al. 2016a, which are not built.

    Raises:
        ConfigError: Not two or three positive sizes, or more than one channel.
    """
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ConfigError(
            f"{what} takes image_shape (H, W) or (1, H, W) of positive sizes, got {image_shape!r}"
        )
    if len(shape) == 3 and shape[0] != 1:
        raise ConfigError(
            f"{what} models a single grey channel, got image_shape {shape} with {shape[0]} channels"
        )
    return shape[-2], shape[-1]


def check_kernel_size(kernel_size: int, what: str) -> int:
    """Check an odd kernel size of at least 3 (a centre with a neighbour on each side).

    Raises:
        ConfigError: Even, below 3 or not an integer.
    """
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)):
        raise ConfigError(f"{what} kernel_size must be an odd integer >= 3, got {kernel_size!r}")
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ConfigError(f"{what} kernel_size must be an odd integer >= 3, got {kernel_size!r}")
    return int(kernel_size)


def input_levels(num_params: int, levels: int | None) -> int:
    """The number of values a pixel takes: 2 (binary, a Bernoulli head with one logit) unless
    given, else 256 (8-bit codes for a categorical or discretized-logistic head).

    The networks read a pixel as ``x / (levels - 1)`` in ``[0, 1]``.

    Raises:
        ConfigError: ``levels`` below 2.
    """
    if levels is None:
        return 2 if int(num_params) == 1 else 256
    if isinstance(levels, bool) or int(levels) < 2:
        raise ConfigError(f"levels must be an integer >= 2, got {levels!r}")
    return int(levels)


@functools.lru_cache(maxsize=32)
def _pixelcnn_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    c = kernel_size // 2
    mask = np.zeros((kernel_size, kernel_size), dtype=bool)
    mask[:c, :] = True
    mask[c, : c + (mask_type == "B")] = True
    mask.setflags(write=False)
    return mask


def _check_mask_type(mask_type: str) -> str:
    if mask_type not in ("A", "B"):
        raise ConfigError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    return mask_type


def pixelcnn_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    """PixelCNN's ``(k, k)`` kernel mask (van den Oord et al. 2016a, figure 2).

    ``True`` on the rows above the centre and left of the centre in the centre row; mask
    ``"B"`` also at the centre (a layer after the first may read its own position's
    features, which already exclude that pixel), mask ``"A"`` not (the first layer must not
    read the pixel it predicts).

    Returns:
        A read-only boolean array ``(k, k)``.

    Raises:
        ConfigError: ``mask_type`` not ``"A"``/``"B"``, or a bad kernel size.
    """
    return _pixelcnn_mask(check_kernel_size(kernel_size, "PixelCNN"), _check_mask_type(mask_type))


def vertical_kernel(kernel_size: int) -> tuple[int, int]:
    """``(kh, kw) = (k // 2 + 1, k)``: the vertical stack's kernel, the centre row and the
    ``k // 2`` rows above it (van den Oord et al. 2016b, figure 1 right)."""
    k = check_kernel_size(kernel_size, "GatedPixelCNN")
    return k // 2 + 1, k


def vertical_padding(kernel_size: int) -> Padding:
    """Padding of the vertical stack's convolution: ``k // 2`` rows on top, none below,
    ``k // 2`` columns each side, so output row ``i`` sees input rows ``i - k // 2 .. i``."""
    c = check_kernel_size(kernel_size, "GatedPixelCNN") // 2
    return (c, 0), (c, c)


@functools.lru_cache(maxsize=32)
def _horizontal_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    mask = np.ones((1, kernel_size // 2 + 1), dtype=bool)
    if mask_type == "A":
        mask[0, -1] = False
    mask.setflags(write=False)
    return mask


def horizontal_mask(kernel_size: int, mask_type: str) -> np.ndarray:
    """The horizontal stack's ``(1, k // 2 + 1)`` kernel mask: the ``k // 2`` pixels left of
    the current one, and (mask ``"B"``, every layer after the first) the current position;
    its last column is the current position.

    Raises:
        ConfigError: ``mask_type`` not ``"A"``/``"B"``, or a bad kernel size.
    """
    k = check_kernel_size(kernel_size, "GatedPixelCNN")
    return _horizontal_mask(k, _check_mask_type(mask_type))


def horizontal_padding(kernel_size: int) -> Padding:
    """Padding of the horizontal stack's convolution: ``k // 2`` columns on the left only."""
    c = check_kernel_size(kernel_size, "GatedPixelCNN") // 2
    return (0, 0), (c, 0)


def window_starts(size: int, reach_before: int, window: int) -> np.ndarray:
    """Start of a fixed ``window`` along an axis of ``size`` for each position, for cached
    sampling: the window ``[s, s + window)`` holds ``position`` and the ``reach_before``
    positions before it, clamped inside the image.

    A convolutional net run on the window gives the full image's output at ``position``
    when the window holds the position's receptive field (the positions it depends on) or
    meets the image edge where the field would leave it, since a window edge inside the
    image only corrupts outputs farther from the position than its field reaches.

    Args:
        size: The axis length (``H`` or ``W``).
        reach_before: How far the receptive field reaches before the position.
        window: The window length, ``<= size``.

    Returns:
        ``(size,)`` int array, ``starts[p] = clip(p - reach_before, 0, size - window)``.
    """
    if not 1 <= int(window) <= int(size):
        raise ConfigError(f"a window of {window} does not fit an axis of {size}")
    starts = np.clip(np.arange(int(size)) - int(reach_before), 0, int(size) - int(window))
    return starts.astype(np.int64)


def conv_initial_weights(
    shapes: Mapping[str, tuple[int, ...]],
    masks: Mapping[str, np.ndarray],
    seed: int,
) -> dict[str, np.ndarray]:
    """Initial weights drawn as ``torch.nn.Conv2d`` / ``nn.Linear`` draw them (uniform on
    ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, fan-in the inputs times the kernel's *unmasked*
    area) by numpy's generator seeded ``seed``, so both backends start from the same numbers.

    Args:
        shapes: Weight name -> shape, in order: ``"....weight"`` ``(out, in, kh, kw)`` or
            ``(out, in)``, ``"....bias"`` ``(out,)`` right after its weight.
        masks: Weight name -> boolean ``(kh, kw)`` mask; masked entries are set to zero.
        seed: Seed of numpy's generator.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    bound = 1.0
    for name, shape in shapes.items():
        if name.endswith(".weight"):
            mask = masks.get(name)
            area = math.prod(shape[2:]) if mask is None else int(np.sum(mask))
            bound = 1.0 / math.sqrt(shape[1] * area)
            w = rng.uniform(-bound, bound, shape)
            out[name] = w if mask is None else w * mask
        else:
            out[name] = rng.uniform(-bound, bound, shape)
    return out


Plan = tuple[dict[str, tuple[int, ...]], dict[str, np.ndarray]]


def _conv(
    shapes: dict, name: str, c_out: int, c_in: int, kernel: tuple[int, int], bias: bool = True
) -> None:
    shapes[f"{name}.weight"] = (c_out, c_in, *kernel)
    if bias:
        shapes[f"{name}.bias"] = (c_out,)


def check_sizes(what: str, **sizes: int) -> None:
    """Raise :class:`ConfigError` unless each named size is a positive integer."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{what} {name} must be a positive integer, got {value!r}")


def pixelcnn_plan(channels: int, layers: int, kernel_size: int, num_params: int) -> Plan:
    """PixelCNN's weights (van den Oord et al. 2016a, figure 5 and table 4): name -> torch
    shape, and the masked ones' masks.

    ``input``: ``k x k`` mask A, 1 -> ``channels``; ``blocks.{b}`` (``layers`` residual
    blocks): ``reduce`` 1x1 ``channels -> channels // 2``, ``conv`` 3x3 mask B, ``expand``
    1x1 back to ``channels``; ``output.0`` 1x1 ``channels -> channels``, ``output.1`` 1x1
    ``channels -> num_params``.

    Raises:
        ConfigError: A size below 1 (``channels`` below 2) or a bad kernel size.
    """
    check_sizes("PixelCNN", channels=channels, layers=layers, num_params=num_params)
    k = check_kernel_size(kernel_size, "PixelCNN")
    if channels < 2:
        raise ConfigError(f"PixelCNN channels must be >= 2 (blocks halve them), got {channels}")
    half = channels // 2
    shapes: dict[str, tuple[int, ...]] = {}
    _conv(shapes, "input", channels, 1, (k, k))
    masks = {"input.weight": pixelcnn_mask(k, "A")}
    for b in range(layers):
        _conv(shapes, f"blocks.{b}.reduce", half, channels, (1, 1))
        _conv(shapes, f"blocks.{b}.conv", half, half, (3, 3))
        _conv(shapes, f"blocks.{b}.expand", channels, half, (1, 1))
        masks[f"blocks.{b}.conv.weight"] = pixelcnn_mask(3, "B")
    _conv(shapes, "output.0", channels, channels, (1, 1))
    _conv(shapes, "output.1", num_params, channels, (1, 1))
    return shapes, masks


def gated_plan(
    channels: int, layers: int, kernel_size: int, num_params: int, num_classes: int
) -> Plan:
    """Gated PixelCNN's weights (van den Oord et al. 2016b, figure 2): name -> torch shape,
    and the masked ones' masks.

    Layer ``l`` (input channels 1 for the first, ``channels`` after): ``vertical``
    (:func:`vertical_kernel`) and ``horizontal`` (``1 x (k // 2 + 1)``, mask A in the first
    layer) to ``2 * channels`` (the tanh and sigmoid halves), ``link`` 1x1 ``2 * channels ->
    2 * channels`` (vertical to horizontal), ``residual`` 1x1 ``channels -> channels``; with
    classes, ``vertical_context`` and ``horizontal_context`` ``(2 * channels, num_classes)``
    without bias (the class-dependent gate biases ``V^T h``). Then ``output.0``/``output.1``
    as PixelCNN's.

    Raises:
        ConfigError: A size below 1, ``num_classes`` below 0, or a bad kernel size.
    """
    check_sizes("GatedPixelCNN", channels=channels, layers=layers, num_params=num_params)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError(f"GatedPixelCNN num_classes must be an integer, got {num_classes!r}")
    if num_classes < 0:
        raise ConfigError(f"GatedPixelCNN num_classes must be >= 1 or None, got {num_classes}")
    k = check_kernel_size(kernel_size, "GatedPixelCNN")
    shapes: dict[str, tuple[int, ...]] = {}
    masks = {}
    for i in range(layers):
        c_in = 1 if i == 0 else channels
        _conv(shapes, f"layers.{i}.vertical", 2 * channels, c_in, vertical_kernel(k))
        _conv(shapes, f"layers.{i}.horizontal", 2 * channels, c_in, (1, k // 2 + 1))
        masks[f"layers.{i}.horizontal.weight"] = horizontal_mask(k, "A" if i == 0 else "B")
        _conv(shapes, f"layers.{i}.link", 2 * channels, 2 * channels, (1, 1))
        _conv(shapes, f"layers.{i}.residual", channels, channels, (1, 1))
        if num_classes:
            for stack in ("vertical", "horizontal"):
                shapes[f"layers.{i}.{stack}_context.weight"] = (2 * channels, num_classes)
    _conv(shapes, "output.0", channels, channels, (1, 1))
    _conv(shapes, "output.1", num_params, channels, (1, 1))
    return shapes, masks


def check_noise_shape(
    shape: Sequence[int], event_shape: Sequence[int], noise_shape: Sequence[int]
) -> tuple[int, ...]:
    """Check the samplers' noise ``(*batch, *event_shape, *noise_shape)``; return ``batch``.

    Raises:
        DataError: The noise does not end in ``(*event_shape, *noise_shape)``.
    """
    shape, tail = tuple(shape), (*event_shape, *noise_shape)
    if len(shape) < len(tail) or shape[len(shape) - len(tail) :] != tail:
        raise DataError(f"noise must be (*batch, {', '.join(map(str, tail))}), got {shape}")
    return shape[: len(shape) - len(tail)]


def check_prefix_shape(
    shape: Sequence[int], batch: Sequence[int], event_shape: Sequence[int]
) -> int:
    """Check a completion prefix, the top ``r`` rows ``(*batch, r, W)`` (``(*batch, 1, r,
    W)`` for ``(1, H, W)`` events); return ``r``.

    Raises:
        DataError: Another batch shape or width, or more rows than the image has.
    """
    shape, batch, event = tuple(shape), tuple(batch), tuple(event_shape)
    height, width = event[-2:]
    lead = event[:-2]
    ok = len(shape) == len(batch) + len(event) and shape[: len(batch)] == batch
    ok = ok and shape[len(batch) : len(batch) + len(lead)] == lead and shape[-1] == width
    if not ok or not 0 <= shape[-2] <= height:
        raise DataError(
            f"prefix must be the top rows (*batch, {', '.join(map(str, lead + ('r',)))}, "
            f"{width}) with batch {batch} and r <= {height}, got {shape}"
        )
    return int(shape[-2])
