"""PixelCNN and Gated PixelCNN on Pyro: autoregressive networks over one-channel images.

``net(x) -> params (*batch, *event, num_params)``, where ``params[..., i, j, :]`` (the
conditional of pixel ``(i, j)`` given the pixels before it in raster order) is computed for
every pixel in one masked pass; a head (``Bernoulli``, ``Categorical(256)``,
``DiscretizedLogisticMixture``) turns it into a distribution. Only one grey channel is
modelled (binarized or 8-bit grey MNIST). Masks and kernels are numpy
(:mod:`ppgen.models.conv_masks`), the same as the NumPyro twin's, whose weights map 1:1.

- :class:`PixelCNN` (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks",
  section 3.4 and figure 5): a ``k x k`` mask-A convolution, residual blocks of
  1x1 / 3x3 mask-B / 1x1 convolutions, two 1x1 output layers. It has a blind spot.
- :class:`GatedPixelCNN` (van den Oord et al. 2016b, "Conditional Image Generation with
  PixelCNN Decoders", section 2): vertical and horizontal stacks, gated activations
  ``tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h)`` with an optional class one-hot ``h``,
  the vertical stack's output shifted down one row into the horizontal stack; no blind spot.

Sampling draws one pixel at a time, pixel ``(i, j)`` as ``head.draw(params, noise[..., i, j,
...])``: ``cached=False`` re-runs the whole network per pixel; ``cached=True`` runs it on a
window holding the pixel's receptive field (PixelCNN) or computes the vertical stack once per
row on the rows above and per pixel only the horizontal stack on the part of the row its field
covers (Gated PixelCNN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ppgen.errors import ConfigError, DataError
from ppgen.models.conv_masks import (
    Padding,
    Plan,
    check_grey_image_shape,
    check_noise_shape,
    check_prefix_shape,
    conv_initial_weights,
    gated_plan,
    horizontal_padding,
    input_levels,
    pixelcnn_plan,
    vertical_padding,
    window_starts,
)
from ppgen.models.elementwise import check_event_shape
from ppgen.models.pyro.ar import Bernoulli, naive_sample, plated_conditionals
from ppgen.models.pyro.params import ModuleWeights

__all__ = ["GatedPixelCNN", "PixelCNN"]

_NO_PADDING: Padding = ((0, 0), (0, 0))


class _Conv(nn.Conv2d):
    """A ``Conv2d`` with explicit ``((top, bottom), (left, right))`` zero padding and an
    optional fixed kernel mask (not a parameter)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        padding: Padding = _NO_PADDING,
        mask: np.ndarray | None = None,
    ) -> None:
        out_channels, in_channels, *kernel = shape
        super().__init__(in_channels, out_channels, tuple(kernel), device="meta")
        self.weight = nn.Parameter(torch.zeros(shape))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        (top, bottom), (left, right) = padding
        self.pad = (left, right, top, bottom)
        self.register_buffer(
            "mask", None if mask is None else torch.as_tensor(np.array(mask)), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.mask is None else self.weight * self.mask
        return F.conv2d(F.pad(x, self.pad) if any(self.pad) else x, weight, self.bias)


def _build(module: nn.Module, plan: Plan, seed: int) -> None:
    with torch.no_grad():
        for name, value in conv_initial_weights(*plan, seed).items():
            module.get_parameter(name).copy_(torch.as_tensor(value))


def _gate(h: torch.Tensor) -> torch.Tensor:
    f, g = h.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class _ImageAutoregressive(ModuleWeights, nn.Module):
    """What both networks share: shapes, input checks and scaling, the raster order, the
    pixel-by-pixel samplers and the plated form, weights by torch name (``input.weight``
    ``(out, in, kh, kw)``, ...; masked entries are stored but never used); a subclass gives
    ``_params`` (the full pass), ``_row_cache`` and ``_pixel_params`` (the cached sampler's
    two steps)."""

    def _setup(self, image_shape: Sequence[int], num_params: int, levels: int | None) -> None:
        self.height, self.width = check_grey_image_shape(image_shape, type(self).__name__)
        self.event_shape = tuple(int(s) for s in image_shape)
        self.num_params = int(num_params)
        self.levels = input_levels(num_params, levels)
        self.order = tuple(range(self.height * self.width))

    def _check_context(self, context: torch.Tensor | None) -> None:
        classes = getattr(self, "num_classes", None)
        if classes is None and context is not None:
            raise ConfigError(f"this {type(self).__name__} is unconditional; it takes no context")
        if classes is not None:
            if context is None:
                raise ConfigError(
                    f"this {type(self).__name__} is class-conditional: pass a context, "
                    f"one-hot (*batch, {classes})"
                )
            if context.dim() < 1 or context.shape[-1] != classes:
                raise DataError(
                    f"{type(self).__name__} takes a context (*batch, {classes}), got shape "
                    f"{tuple(context.shape)}"
                )

    def _inputs(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor | None]:
        """``(batch shape, x as (N, 1, H, W) floats in [0, 1], context (N, K) or None)``."""
        check_event_shape(tuple(x.shape), self.event_shape, type(self).__name__)
        self._check_context(context)
        batch = tuple(x.shape[: x.dim() - len(self.event_shape)])
        if context is not None:
            batch = torch.broadcast_shapes(batch, tuple(context.shape[:-1]))
            context = context.expand(*batch, context.shape[-1]).reshape(-1, context.shape[-1])
            context = context.to(self._dtype())
        x = x.expand(*batch, *self.event_shape).reshape(-1, 1, self.height, self.width)
        return batch, self._scale(x), context

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self._dtype()) / (self.levels - 1)

    def _dtype(self) -> torch.dtype:
        """The weights' float type (inputs and context are cast to it)."""
        return self.output[1].weight.dtype

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Every pixel's conditional parameters in one pass.

        Args:
            x: ``(*batch, *event_shape)``: 0./1. floats (binary) or integer codes
                ``0..levels-1``.
            context: One-hot classes ``(*batch, num_classes)`` for a class-conditional
                Gated PixelCNN, else ``None``.

        Returns:
            ``(*batch, *event_shape, num_params)``; ``[..., i, j, :]`` depends only on the
            pixels before ``(i, j)`` in raster order (and on the context).

        Raises:
            DataError: ``x`` of another image shape, a context of another width.
            ConfigError: A context given to an unconditional net, or none to a conditional one.
        """
        batch, x, context = self._inputs(x, context)
        out = self._params(x, context)  # (N, P, H, W)
        return out.permute(0, 2, 3, 1).reshape(*batch, *self.event_shape, self.num_params)

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.output[1](F.relu(self.output[0](F.relu(h))))

    def sample(
        self,
        noise: torch.Tensor,
        head: object,
        context: torch.Tensor | None = None,
        cached: bool = True,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw images pixel by pixel in raster order (no gradients).

        Pixel ``(i, j)`` is ``head.draw(params, noise[..., i, j, ...])`` with ``params`` the
        network's output at ``(i, j)`` on the image drawn so far, so the same noise gives the
        same image whether ``cached`` or not.

        Args:
            noise: Uniform noise ``(*batch, *event_shape, *head.noise_shape)`` in ``(0, 1)``
                (``ppgen.models.pyro.ar.uniform_noise``).
            head: The conditional family (``num_params`` outputs per pixel), a head of
                :mod:`ppgen.models.pyro.ar`.
            context: One-hot classes ``(*batch, num_classes)`` (class-conditional nets).
            cached: ``False``: a full pass per pixel (the reference,
                :func:`ppgen.models.pyro.ar.naive_sample`); ``True``: only what the next pixel
                needs (see the module docstring).
            prefix: The top ``r`` rows given, ``(*batch, r, W)`` (``(*batch, 1, r, W)`` for
                ``(1, H, W)`` events): completion. They are kept, and the rest drawn given
                them. ``None``: draw every pixel.

        Returns:
            ``(*batch, *event_shape)`` in the head's value type.

        Raises:
            DataError: Noise or prefix of the wrong shape, or a bad context.
            ConfigError: A head with another ``num_params``; context given or missing.
        """
        if int(head.num_params) != self.num_params:
            raise ConfigError(
                f"{type(self).__name__} was built for {self.num_params} parameters per pixel, "
                f"the head takes {head.num_params}"
            )
        batch = check_noise_shape(tuple(noise.shape), self.event_shape, head.noise_shape)
        self._check_context(context)
        n = math.prod(batch)
        dtype = noise.dtype if isinstance(head, Bernoulli) else torch.long  # as naive_sample's
        x = torch.zeros(n, self.height, self.width, dtype=dtype)
        first = 0
        if prefix is not None:
            first = check_prefix_shape(tuple(prefix.shape), batch, self.event_shape)
            x[:, :first] = prefix.reshape(n, first, self.width)
        if not cached:
            x = x.reshape(*batch, *self.event_shape)
            return naive_sample(self, noise, head, context, start=first * self.width, x=x)
        noise = noise.reshape(n, self.height, self.width, *head.noise_shape)
        if context is not None:
            context = context.expand(*batch, context.shape[-1]).reshape(n, -1)
            context = context.to(self._dtype())
        with torch.no_grad():
            for i in range(first, self.height):
                cache = self._row_cache(x, i, context)
                for j in range(self.width):
                    params = self._pixel_params(x, i, j, context, cache)
                    x[:, i, j] = head.draw(params, noise[:, i, j]).to(dtype)
        return x.reshape(*batch, *self.event_shape)

    def plated(
        self, x: torch.Tensor | None, head: object, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The model as one sample site per pixel, ``x_{p}`` for raster position
        ``p = i * W + j``: ``x_p ~ head.distribution(f(x)_p)``, the paper's ``p(x) =
        prod_p p(x_p | x_<p)`` (van den Oord et al. 2016a, equation 1), by the generic loop
        :func:`ppgen.models.pyro.ar.plated_conditionals` (``f(x)_p`` reads only ``x_<p``).
        Call it inside the ``"data"`` plate. One full pass per pixel: a readable reference,
        not a fast path.

        Args:
            x: ``(*batch, *event_shape)`` observed, or ``None`` to draw every pixel.
            head: The conditional family.
            context: One-hot classes ``(*batch, num_classes)`` or ``None``.

        Returns:
            The image ``(*batch, *event_shape)`` (drawn when ``x`` is ``None``).
        """
        return plated_conditionals(self, x, head, context)


class _Block(nn.Module):
    """PixelCNN's residual block (van den Oord et al. 2016a, figure 5):
    ``h + expand(relu(conv(relu(reduce(relu(h))))))``."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], prefix: str, mask: np.ndarray):
        super().__init__()
        self.reduce = _Conv(shapes[f"{prefix}.reduce.weight"])
        self.conv = _Conv(shapes[f"{prefix}.conv.weight"], ((1, 1), (1, 1)), mask)
        self.expand = _Conv(shapes[f"{prefix}.expand.weight"])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.expand(F.relu(self.conv(F.relu(self.reduce(F.relu(h))))))


class PixelCNN(_ImageAutoregressive):
    """PixelCNN (van den Oord et al. 2016a, section 3.4, figure 5) over one grey channel.

    ``input``: ``kernel_size`` mask-A convolution 1 -> ``channels``; ``layers`` residual
    blocks (1x1 to ``channels // 2``, 3x3 mask B, 1x1 back); ReLU, 1x1, ReLU, 1x1 to
    ``num_params`` per pixel. Pixel ``(i, j)``'s field is the pixels ``(i - a, j + d)`` with
    ``0 <= a <= R``, ``-R <= d <= a`` (``d < 0`` when ``a = 0``), ``R = kernel_size // 2 +
    layers`` (for ``kernel_size = 3``): the pixels above and to the right beyond the diagonal
    are never seen, the blind spot that :class:`GatedPixelCNN` removes.

    Args:
        image_shape: ``(H, W)`` or ``(1, H, W)``: the event shape.
        channels: Hidden channels (``2h`` in the paper), at least 2.
        layers: Residual blocks.
        kernel_size: Odd size of the first (mask-A) convolution (7 in the paper).
        num_params: Outputs per pixel: the head's ``num_params``.
        levels: Values a pixel takes (inputs are read as ``x / (levels - 1)``); ``None``:
            2 when ``num_params == 1`` (binary), else 256 (8-bit codes).
        seed: Seed of the initial weights (numpy, the same on both backends).

    Raises:
        ConfigError: A bad shape, size or kernel size, or several channels.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: int = 64,
        layers: int = 5,
        kernel_size: int = 7,
        num_params: int = 1,
        levels: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._setup(image_shape, num_params, levels)
        shapes, masks = plan = pixelcnn_plan(channels, layers, kernel_size, num_params)
        c = kernel_size // 2
        self.input = _Conv(shapes["input.weight"], ((c, c), (c, c)), masks["input.weight"])
        self.blocks = nn.ModuleList(
            _Block(shapes, f"blocks.{b}", masks[f"blocks.{b}.conv.weight"]) for b in range(layers)
        )
        self.output = nn.ModuleList(_Conv(shapes[f"output.{i}.weight"]) for i in range(2))
        _build(self, plan, seed)
        # The field reaches R rows up and R columns each side; a window of R + 1 rows and
        # 2 R + 1 columns around the next pixel gives its parameters exactly.
        self.reach = c + layers
        rows, cols = min(self.height, self.reach + 1), min(self.width, 2 * self.reach + 1)
        self.row_starts = window_starts(self.height, self.reach, rows)
        self.col_starts = window_starts(self.width, self.reach, cols)
        self.window = (rows, cols)

    def _params(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h)
        return self._output(h)

    def _row_cache(self, x: torch.Tensor, i: int, context: torch.Tensor | None) -> None:
        return None

    def _pixel_params(
        self, x: torch.Tensor, i: int, j: int, context: torch.Tensor | None, cache: None
    ) -> torch.Tensor:
        s, t = int(self.row_starts[i]), int(self.col_starts[j])
        rows, cols = self.window
        window = self._scale(x[:, None, s : s + rows, t : t + cols])
        return self._params(window, context)[:, :, i - s, j - t]


class _GatedLayer(nn.Module):
    """One gated layer's convolutions (van den Oord et al. 2016b, figure 2)."""

    def __init__(self, plan: Plan, i: int, kernel_size: int) -> None:
        super().__init__()
        shapes, masks = plan
        name = f"layers.{i}"
        self.vertical = _Conv(shapes[f"{name}.vertical.weight"], vertical_padding(kernel_size))
        self.horizontal = _Conv(
            shapes[f"{name}.horizontal.weight"],
            horizontal_padding(kernel_size),
            masks[f"{name}.horizontal.weight"],
        )
        self.link = _Conv(shapes[f"{name}.link.weight"])
        self.residual = _Conv(shapes[f"{name}.residual.weight"])
        if f"{name}.vertical_context.weight" in shapes:
            out, classes = shapes[f"{name}.vertical_context.weight"]
            self.vertical_context = nn.Linear(classes, out, bias=False, device="meta")
            self.horizontal_context = nn.Linear(classes, out, bias=False, device="meta")
            self.vertical_context.weight = nn.Parameter(torch.zeros(out, classes))
            self.horizontal_context.weight = nn.Parameter(torch.zeros(out, classes))


class GatedPixelCNN(_ImageAutoregressive):
    """Gated PixelCNN (van den Oord et al. 2016b, section 2, figure 2) over one grey channel.

    Layer ``l`` maps the stacks ``(v, h)``: ``v' = gate(V * v + c_v)``, ``h' = [h +]
    residual(gate(H * h + link(shift_down(V * v)) + c_h))`` with ``gate(a) = tanh(a_f) *
    sigmoid(a_g)`` over the two channel halves, ``V`` the vertical convolution (the ``k // 2``
    rows above and the current row), ``H`` the horizontal one (mask A in the first layer,
    which has no residual), ``c = W_context @ context`` the class-dependent gate biases. The
    output is ReLU, 1x1, ReLU, 1x1 on the horizontal stack. With ``L = layers`` and ``k =
    3``, pixel ``(i, j)`` sees every pixel ``(i, j - d)``, ``1 <= d <= L``, and ``(i - a, j +
    d)``, ``1 <= a <= L + 1``, ``|d| <= L``: no blind spot.

    Args:
        image_shape: ``(H, W)`` or ``(1, H, W)``: the event shape.
        channels: Channels of each stack.
        layers: Gated layers.
        num_params: Outputs per pixel: the head's ``num_params``.
        num_classes: Width of the one-hot class context; ``None``: unconditional.
        kernel_size: Odd kernel size of both stacks.
        levels: Values a pixel takes (see :class:`PixelCNN`).
        seed: Seed of the initial weights (numpy, the same on both backends).

    Raises:
        ConfigError: A bad shape, size or kernel size, or several channels.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        channels: int = 32,
        layers: int = 7,
        num_params: int = 1,
        num_classes: int | None = None,
        kernel_size: int = 3,
        levels: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._setup(image_shape, num_params, levels)
        plan = gated_plan(channels, layers, kernel_size, num_params, num_classes or 0)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.layers = nn.ModuleList(_GatedLayer(plan, i, kernel_size) for i in range(layers))
        self.output = nn.ModuleList(_Conv(plan[0][f"output.{i}.weight"]) for i in range(2))
        _build(self, plan, seed)
        # Row i's links come from the vertical stack at row i - 1, which reaches
        # layers * (k // 2) rows further up.
        self.reach = layers * (kernel_size // 2) + 1
        rows = min(self.height, self.reach + 1)
        self.row_starts = window_starts(self.height, self.reach, rows)
        self.window_rows = rows
        # Along its row, pixel j's horizontal stack reads columns j - layers * (k // 2) .. j.
        cols = min(self.width, layers * (kernel_size // 2) + 1)
        self.col_starts = window_starts(self.width, cols - 1, cols)
        self.window_cols = cols

    def _links(self, x: torch.Tensor, context: torch.Tensor | None) -> list[torch.Tensor]:
        """The vertical stack's contribution to each layer's horizontal pre-activation,
        ``link(shift_down(V * v))`` ``(N, 2C, H, W)``: row ``i`` depends on rows ``< i``."""
        links, v = [], x
        for layer in self.layers:
            pre = layer.vertical(v)
            links.append(layer.link(F.pad(pre, (0, 0, 1, 0))[:, :, :-1]))
            if context is not None:
                pre = pre + layer.vertical_context(context)[:, :, None, None]
            v = _gate(pre)
        return links

    def _horizontal(
        self, x: torch.Tensor, links: list[torch.Tensor], context: torch.Tensor | None
    ) -> torch.Tensor:
        """The horizontal stack and the output layers on some rows (its kernels are one row
        high, so rows are independent given the links)."""
        h = x
        for i, (layer, link) in enumerate(zip(self.layers, links, strict=True)):
            pre = layer.horizontal(h) + link
            if context is not None:
                pre = pre + layer.horizontal_context(context)[:, :, None, None]
            out = layer.residual(_gate(pre))
            h = out if i == 0 else h + out
        return self._output(h)

    def _params(self, x: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        return self._horizontal(x, self._links(x, context), context)

    def _row_cache(
        self, x: torch.Tensor, i: int, context: torch.Tensor | None
    ) -> list[torch.Tensor]:
        s = int(self.row_starts[i])
        links = self._links(self._scale(x[:, None, s : s + self.window_rows]), context)
        return [link[:, :, i - s : i - s + 1] for link in links]

    def _pixel_params(
        self,
        x: torch.Tensor,
        i: int,
        j: int,
        context: torch.Tensor | None,
        cache: list[torch.Tensor],
    ) -> torch.Tensor:
        t, cols = int(self.col_starts[j]), self.window_cols
        row = self._scale(x[:, None, i : i + 1, t : t + cols])
        links = [link[..., t : t + cols] for link in cache]
        return self._horizontal(row, links, context)[:, :, 0, j - t]
