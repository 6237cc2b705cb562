"""PixelCNN and Gated PixelCNN on NumPyro: autoregressive networks over one-channel images.

``net(x) -> params (*batch, *event, num_params)``, where ``params[..., i, j, :]`` (the
conditional of pixel ``(i, j)`` given the pixels before it in raster order) is computed for
every pixel in one masked pass; a head (``Bernoulli``, ``Categorical(256)``,
``DiscretizedLogisticMixture``) turns it into a distribution. Only one grey channel is
modelled (binarized or 8-bit grey MNIST). Equinox modules of ``eqx.nn.Conv2d`` in torch's
NCHW layout; masks and kernels are numpy (:mod:`ppgen.models.conv_masks`), so the weights
map 1:1 onto the Pyro twin's (``ppgen.models.pyro.pixelcnn``, whose docstrings say more).

- :class:`PixelCNN` (van den Oord et al. 2016a, section 3.4, figure 5): mask-A input
  convolution, residual blocks with 3x3 mask-B convolutions; it has a blind spot.
- :class:`GatedPixelCNN` (van den Oord et al. 2016b, section 2): vertical and horizontal
  stacks, gated activations, class-conditional gate biases; no blind spot.

Samplers are ``lax.fori_loop`` over rows and columns: ``cached=False`` re-runs the whole
network per pixel; ``cached=True`` runs PixelCNN on a fixed window holding the pixel's
receptive field, and Gated PixelCNN's vertical stack once per row and its horizontal stack
per pixel on the ``layers * (k // 2) + 1`` columns of the row its field covers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

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
from ppgen.models.conventions import check_weights
from ppgen.models.elementwise import check_event_shape
from ppgen.models.numpyro.ar import Bernoulli, naive_sample, plated_conditionals

__all__ = ["GatedPixelCNN", "PixelCNN"]

_NO_PADDING: Padding = ((0, 0), (0, 0))
_KEY = jax.random.PRNGKey(0)  # eqx needs a key; only shapes are built (filter_eval_shape)


class _Conv(eqx.Module):
    """An ``eqx.nn.Conv2d`` with explicit ``((top, bottom), (left, right))`` padding and an
    optional fixed kernel mask, on batches ``(N, C, H, W)``."""

    inner: eqx.nn.Conv2d
    mask: tuple[tuple[bool, ...], ...] | None = eqx.field(static=True)

    def __init__(
        self,
        shape: tuple[int, ...],
        padding: Padding = _NO_PADDING,
        mask: np.ndarray | None = None,
    ) -> None:
        out_channels, in_channels, *kernel = shape
        # shapes only (no weights drawn, nothing compiled): the network's constructor sets
        # every weight from the seeded numpy draw (set_weights)
        self.inner = eqx.filter_eval_shape(
            eqx.nn.Conv2d, in_channels, out_channels, tuple(kernel), padding=padding, key=_KEY
        )
        self.mask = None if mask is None else tuple(tuple(bool(b) for b in r) for r in mask)

    def __call__(self, x: jax.Array) -> jax.Array:
        conv = self.inner
        if self.mask is not None:
            conv = eqx.tree_at(lambda c: c.weight, conv, conv.weight * np.array(self.mask))
        return jax.vmap(conv)(x)


def _gate(h: jax.Array) -> jax.Array:
    f, g = jnp.split(h, 2, axis=1)
    return jnp.tanh(f) * jax.nn.sigmoid(g)


def _torch_name(path: tuple) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            if key.name != "inner":
                parts.append(key.name)
        else:
            parts.append(str(key.idx))
    return ".".join(parts)


class _ImageAutoregressive(eqx.Module):
    """What both networks share: shapes, input checks and scaling, the raster order, the
    pixel-by-pixel samplers and the plated form; a subclass gives ``_params`` (the full
    pass), ``_row_cache`` and ``_pixel_params`` (the cached sampler's two steps)."""

    height: int = eqx.field(static=True)
    width: int = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)
    num_params: int = eqx.field(static=True)
    levels: int = eqx.field(static=True)
    order: tuple[int, ...] = eqx.field(static=True)

    def _setup(self, image_shape: Sequence[int], num_params: int, levels: int | None) -> None:
        self.height, self.width = check_grey_image_shape(image_shape, type(self).__name__)
        self.event_shape = tuple(int(s) for s in image_shape)
        self.num_params = int(num_params)
        self.levels = input_levels(num_params, levels)
        self.order = tuple(range(self.height * self.width))

    def _check_context(self, context: jax.Array | None) -> None:
        classes = getattr(self, "num_classes", None)
        if classes is None and context is not None:
            raise ConfigError(f"this {type(self).__name__} is unconditional; it takes no context")
        if classes is not None:
            if context is None:
                raise ConfigError(
                    f"this {type(self).__name__} is class-conditional: pass a context, "
                    f"one-hot (*batch, {classes})"
                )
            if jnp.ndim(context) < 1 or jnp.shape(context)[-1] != classes:
                raise DataError(
                    f"{type(self).__name__} takes a context (*batch, {classes}), got shape "
                    f"{tuple(jnp.shape(context))}"
                )

    def _scale(self, x: jax.Array) -> jax.Array:
        return jnp.asarray(x, dtype=self._dtype()) / (self.levels - 1)

    def _dtype(self) -> jnp.dtype:
        """The weights' float type (inputs and context are cast to it)."""
        return self.output[1].inner.weight.dtype

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
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
        x = jnp.asarray(x)
        check_event_shape(tuple(x.shape), self.event_shape, type(self).__name__)
        self._check_context(context)
        batch = x.shape[: x.ndim - len(self.event_shape)]
        if context is not None:
            context = jnp.asarray(context, dtype=self._dtype())
            batch = jnp.broadcast_shapes(batch, context.shape[:-1])
            context = jnp.broadcast_to(context, (*batch, context.shape[-1]))
            context = context.reshape(-1, context.shape[-1])
        x = jnp.broadcast_to(x, (*batch, *self.event_shape))
        out = _forward(self, x.reshape(-1, 1, self.height, self.width), context)
        return jnp.moveaxis(out, 1, -1).reshape(*batch, *self.event_shape, self.num_params)

    def _output(self, h: jax.Array) -> jax.Array:
        return self.output[1](jax.nn.relu(self.output[0](jax.nn.relu(h))))

    def sample(
        self,
        noise: jax.Array,
        head: object,
        context: jax.Array | None = None,
        cached: bool = True,
        prefix: jax.Array | None = None,
    ) -> jax.Array:
        """Draw images pixel by pixel in raster order (``lax.fori_loop`` over rows and
        columns).

        Pixel ``(i, j)`` is ``head.draw(params, noise[..., i, j, ...])`` with ``params`` the
        network's output at ``(i, j)`` on the image drawn so far, so the same noise gives the
        same image whether ``cached`` or not.

        Args:
            noise: Uniform noise ``(*batch, *event_shape, *head.noise_shape)`` in ``(0, 1)``
                (``ppgen.models.numpyro.ar.uniform_noise``).
            head: The conditional family (``num_params`` outputs per pixel), a head of
                :mod:`ppgen.models.numpyro.ar`.
            context: One-hot classes ``(*batch, num_classes)`` (class-conditional nets).
            cached: ``False``: a full pass per pixel (the reference,
                :func:`ppgen.models.numpyro.ar.naive_sample`); ``True``: only what the next
                pixel needs (see the module docstring).
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
        noise = jnp.asarray(noise)
        batch = check_noise_shape(tuple(noise.shape), self.event_shape, head.noise_shape)
        self._check_context(context)
        n = math.prod(batch)
        dtype = jnp.result_type(float) if isinstance(head, Bernoulli) else jnp.int32
        x = jnp.zeros((n, self.height, self.width), dtype)  # the dtype of naive_sample's
        first = 0
        if prefix is not None:
            prefix = jnp.asarray(prefix)
            first = check_prefix_shape(tuple(prefix.shape), batch, self.event_shape)
            x = x.at[:, :first].set(prefix.reshape(n, first, self.width).astype(dtype))
        if not cached:
            x = x.reshape(*batch, *self.event_shape)
            return naive_sample(self, noise, head, context, start=first * self.width, x=x)
        noise = noise.reshape(n, self.height, self.width, *head.noise_shape)
        if context is not None:
            context = jnp.asarray(context, dtype=self._dtype())
            context = jnp.broadcast_to(context, (*batch, context.shape[-1])).reshape(n, -1)
        x = _draw(self, head, noise, context, x, first)
        return x.reshape(*batch, *self.event_shape)

    def plated(
        self, x: jax.Array | None, head: object, context: jax.Array | None = None
    ) -> jax.Array:
        """The model as one sample site per pixel, ``x_{p}`` for raster position
        ``p = i * W + j``: ``x_p ~ head.distribution(f(x)_p)``, the paper's ``p(x) =
        prod_p p(x_p | x_<p)`` (van den Oord et al. 2016a, equation 1), by the generic loop
        :func:`ppgen.models.numpyro.ar.plated_conditionals` (``f(x)_p`` reads only
        ``x_<p``). Call it inside the ``"data"`` plate. One full pass per pixel: a readable
        reference, not a fast path.

        Args:
            x: ``(*batch, *event_shape)`` observed, or ``None`` to draw every pixel.
            head: The conditional family.
            context: One-hot classes ``(*batch, num_classes)`` or ``None``.

        Returns:
            The image ``(*batch, *event_shape)`` (drawn when ``x`` is ``None``).
        """
        return plated_conditionals(self, x, head, context)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Weights as numpy by the Pyro twin's names and torch's layout (``input.weight``
        ``(out, in, kh, kw)``, biases ``(out,)``; masked entries stored but never used)."""
        leaves = jax.tree_util.tree_flatten_with_path(self)[0]
        return {
            _torch_name(path): np.array(v).reshape(-1 if path[-1].name == "bias" else v.shape)
            for path, v in leaves
        }

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> _ImageAutoregressive:
        """A copy holding ``weights`` (keys and shapes of :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        leaves, treedef = jax.tree_util.tree_flatten_with_path(self)
        check_weights(  # shapes only: the constructor calls this on its weightless skeleton
            {
                _torch_name(path): jax.ShapeDtypeStruct(
                    (v.size,) if path[-1].name == "bias" else v.shape, v.dtype
                )
                for path, v in leaves
            },
            weights,
        )
        new = [
            jnp.asarray(weights[_torch_name(path)], dtype=v.dtype).reshape(v.shape)
            for path, v in leaves
        ]
        return jax.tree_util.tree_unflatten(treedef, new)


@eqx.filter_jit
def _forward(net: _ImageAutoregressive, x: jax.Array, context: jax.Array | None) -> jax.Array:
    """``net``'s full pass on ``x (N, 1, H, W)``, compiled once per network structure (so
    the plated form's pass per pixel and eager calls run compiled)."""
    return net._params(net._scale(x), context)


@eqx.filter_jit
def _draw(
    net: _ImageAutoregressive,
    head: object,
    noise: jax.Array,
    context: jax.Array | None,
    x: jax.Array,
    first: int,
) -> jax.Array:
    """The cached sampler's loops: rows ``first..H-1`` of ``x (N, H, W)`` in raster order,
    the row's cache computed once per row."""

    def row(i: jax.Array, x: jax.Array) -> jax.Array:
        cache = net._row_cache(x, i, context)

        def pixel(j: jax.Array, x: jax.Array) -> jax.Array:
            params = net._pixel_params(x, i, j, context, cache)
            return x.at[:, i, j].set(head.draw(params, noise[:, i, j]).astype(x.dtype))

        return jax.lax.fori_loop(0, net.width, pixel, x)

    return jax.lax.fori_loop(first, net.height, row, x)


class _Block(eqx.Module):
    """PixelCNN's residual block (van den Oord et al. 2016a, figure 5):
    ``h + expand(relu(conv(relu(reduce(relu(h))))))``."""

    reduce: _Conv
    conv: _Conv
    expand: _Conv

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], prefix: str, mask: np.ndarray):
        self.reduce = _Conv(shapes[f"{prefix}.reduce.weight"])
        self.conv = _Conv(shapes[f"{prefix}.conv.weight"], ((1, 1), (1, 1)), mask)
        self.expand = _Conv(shapes[f"{prefix}.expand.weight"])

    def __call__(self, h: jax.Array) -> jax.Array:
        relu = jax.nn.relu
        return h + self.expand(relu(self.conv(relu(self.reduce(relu(h))))))


class PixelCNN(_ImageAutoregressive):
    """PixelCNN (van den Oord et al. 2016a, section 3.4, figure 5) over one grey channel;
    the twin of ``ppgen.models.pyro.pixelcnn.PixelCNN`` (same layers, field and blind spot).

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

    input: _Conv
    blocks: list[_Block]
    output: list[_Conv]
    reach: int = eqx.field(static=True)
    window: tuple[int, int] = eqx.field(static=True)
    row_starts: tuple[int, ...] = eqx.field(static=True)
    col_starts: tuple[int, ...] = eqx.field(static=True)

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
        self._setup(image_shape, num_params, levels)
        shapes, masks = plan = pixelcnn_plan(channels, layers, kernel_size, num_params)
        c = kernel_size // 2
        self.input = _Conv(shapes["input.weight"], ((c, c), (c, c)), masks["input.weight"])
        self.blocks = [
            _Block(shapes, f"blocks.{b}", masks[f"blocks.{b}.conv.weight"]) for b in range(layers)
        ]
        self.output = [_Conv(shapes[f"output.{i}.weight"]) for i in range(2)]
        self.reach = c + layers
        rows, cols = min(self.height, self.reach + 1), min(self.width, 2 * self.reach + 1)
        self.row_starts = tuple(window_starts(self.height, self.reach, rows).tolist())
        self.col_starts = tuple(window_starts(self.width, self.reach, cols).tolist())
        self.window = (rows, cols)
        weights = conv_initial_weights(*plan, seed)
        initial = self.set_weights(weights)
        self.input, self.blocks, self.output = initial.input, initial.blocks, initial.output

    def _params(self, x: jax.Array, context: jax.Array | None) -> jax.Array:
        h = self.input(x)
        for block in self.blocks:
            h = block(h)
        return self._output(h)

    def _row_cache(self, x: jax.Array, i: jax.Array, context: jax.Array | None) -> None:
        return None

    def _pixel_params(
        self, x: jax.Array, i: jax.Array, j: jax.Array, context: jax.Array | None, cache: None
    ) -> jax.Array:
        s, t = jnp.asarray(self.row_starts)[i], jnp.asarray(self.col_starts)[j]
        rows, cols = self.window
        window = jax.lax.dynamic_slice(x, (0, s, t), (x.shape[0], rows, cols))
        return self._params(self._scale(window[:, None]), context)[:, :, i - s, j - t]


class _GatedLayer(eqx.Module):
    """One gated layer's convolutions (van den Oord et al. 2016b, figure 2)."""

    vertical: _Conv
    horizontal: _Conv
    link: _Conv
    residual: _Conv
    vertical_context: eqx.nn.Linear | None
    horizontal_context: eqx.nn.Linear | None

    def __init__(self, plan: Plan, i: int, kernel_size: int) -> None:
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
        self.vertical_context = self.horizontal_context = None
        if f"{name}.vertical_context.weight" in shapes:
            out, classes = shapes[f"{name}.vertical_context.weight"]
            self.vertical_context, self.horizontal_context = (
                eqx.filter_eval_shape(eqx.nn.Linear, classes, out, use_bias=False, key=_KEY)
                for _ in range(2)
            )


class GatedPixelCNN(_ImageAutoregressive):
    """Gated PixelCNN (van den Oord et al. 2016b, section 2, figure 2) over one grey channel;
    the twin of ``ppgen.models.pyro.pixelcnn.GatedPixelCNN`` (same layers and field, no
    blind spot).

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

    layers: list[_GatedLayer]
    output: list[_Conv]
    num_classes: int | None = eqx.field(static=True)
    reach: int = eqx.field(static=True)
    window_rows: int = eqx.field(static=True)
    row_starts: tuple[int, ...] = eqx.field(static=True)
    window_cols: int = eqx.field(static=True)
    col_starts: tuple[int, ...] = eqx.field(static=True)

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
        self._setup(image_shape, num_params, levels)
        plan = gated_plan(channels, layers, kernel_size, num_params, num_classes or 0)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.layers = [_GatedLayer(plan, i, kernel_size) for i in range(layers)]
        self.output = [_Conv(plan[0][f"output.{i}.weight"]) for i in range(2)]
        self.reach = layers * (kernel_size // 2) + 1
        self.window_rows = min(self.height, self.reach + 1)
        self.row_starts = tuple(window_starts(self.height, self.reach, self.window_rows).tolist())
        self.window_cols = min(self.width, layers * (kernel_size // 2) + 1)
        starts = window_starts(self.width, self.window_cols - 1, self.window_cols)
        self.col_starts = tuple(starts.tolist())
        initial = self.set_weights(conv_initial_weights(*plan, seed))
        self.layers, self.output = initial.layers, initial.output

    def _links(self, x: jax.Array, context: jax.Array | None) -> list[jax.Array]:
        """The vertical stack's contribution to each layer's horizontal pre-activation,
        ``link(shift_down(V * v))`` ``(N, 2C, H, W)``: row ``i`` depends on rows ``< i``."""
        links, v = [], x
        for layer in self.layers:
            pre = layer.vertical(v)
            shifted = jnp.pad(pre, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
            links.append(layer.link(shifted))
            if context is not None:
                pre = pre + jax.vmap(layer.vertical_context)(context)[:, :, None, None]
            v = _gate(pre)
        return links

    def _horizontal(
        self, x: jax.Array, links: list[jax.Array], context: jax.Array | None
    ) -> jax.Array:
        """The horizontal stack and the output layers on some rows (its kernels are one row
        high, so rows are independent given the links)."""
        h = x
        for i, (layer, link) in enumerate(zip(self.layers, links, strict=True)):
            pre = layer.horizontal(h) + link
            if context is not None:
                pre = pre + jax.vmap(layer.horizontal_context)(context)[:, :, None, None]
            out = layer.residual(_gate(pre))
            h = out if i == 0 else h + out
        return self._output(h)

    def _params(self, x: jax.Array, context: jax.Array | None) -> jax.Array:
        return self._horizontal(x, self._links(x, context), context)

    def _row_cache(self, x: jax.Array, i: jax.Array, context: jax.Array | None) -> list[jax.Array]:
        s = jnp.asarray(self.row_starts)[i]
        window = jax.lax.dynamic_slice_in_dim(x, s, self.window_rows, axis=1)
        links = self._links(self._scale(window[:, None]), context)
        return [jax.lax.dynamic_slice_in_dim(link, i - s, 1, axis=2) for link in links]

    def _pixel_params(
        self,
        x: jax.Array,
        i: jax.Array,
        j: jax.Array,
        context: jax.Array | None,
        cache: list[jax.Array],
    ) -> jax.Array:
        t, cols = jnp.asarray(self.col_starts)[j], self.window_cols
        row = jax.lax.dynamic_slice(x, (0, i, t), (x.shape[0], 1, cols))
        links = [jax.lax.dynamic_slice_in_dim(link, t, cols, axis=3) for link in cache]
        return self._horizontal(self._scale(row[:, None]), links, context)[:, :, 0, j - t]
