"""Implicit generative models (generators) and the critics that train them, on NumPyro.

A generator (Goodfellow et al. 2014, "Generative adversarial nets") is an ordinary model
program whose ``x`` is a deterministic function of its latents: ``z ~ N(0, I)`` and
``x = G(z)`` at a ``deterministic`` site. It has no density of ``x``, so it is fitted by a
likelihood-free objective (GAN, WGAN-GP, MMD, ...) that runs the model under a trace, reads
the site ``"x"`` and compares it with the data through a **critic**: a plain Equinox network
the objective owns and registers itself (``eqx_module("critic", critic)``), called as
``critic(x)``, ``critic(x, y)`` (class-conditional, Mirza & Osindero 2014) or
``critic(x, z)`` (the joint critic of BiGAN/ALI, Donahue et al. 2016, Dumoulin et al. 2016)
and returning one score per example.

Networks hold their weights in torch's layouts under torch's names (``state_dict``), drawn
by numpy's seeded generator with torch's default initialisation, so weights copy one to one
from the Pyro twins (:mod:`ppgen.models.pyro.gan`). No batch normalisation anywhere: the
programs stay stateless, and WGAN-GP's gradient penalty forbids it in the critic
(Gulrajani et al. 2017).

A transposed convolution is the adjoint of a strided convolution; XLA's CPU backend computes
the weight gradient of its direct form (an input-dilated convolution) some ten times slower
than torch, so :func:`_conv_transpose` takes both gradients from the strided convolution's
(a ``custom_vjp``; still differentiable twice).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import eqx_module
from numpyro.util import not_jax_tracer

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import check_weights, spawn_seeds
from ppgen.models.numpyro.base import LatentVariableModel
from ppgen.models.numpyro.nets import ACTIVATIONS, MLP

__all__ = ["DCGANCritic", "DCGANGenerator", "Generator", "MLPCritic"]

ARCHITECTURES = ("mlp", "dcgan")
OUTPUTS = ("sigmoid", "identity")
CRITIC_ACTIVATIONS = ("leaky_relu", *sorted(ACTIVATIONS))
LEAKY_SLOPE = 0.2  # LeakyReLU's negative slope in every critic (Radford et al. 2015)
IMAGE = (1, 28, 28)  # the DCGAN networks' grey 28 x 28 image
IMAGE_SHAPES = ((784,), (28, 28), IMAGE)  # the example shapes they accept
# Every convolution is 4 x 4 with stride 2 and padding 1: it halves or doubles the side.
KERNEL, STRIDE, PADDING = 4, 2, 1
_NCHW = ("NCHW", "OIHW", "NCHW")
_HIGHEST = jax.lax.Precision.HIGHEST


def _shape(x_shape: int | Sequence[int], name: str = "x_shape") -> tuple[int, ...]:
    integral = isinstance(x_shape, numbers.Integral)
    shape = (int(x_shape),) if integral else tuple(int(s) for s in x_shape)
    if not shape or min(shape) < 1:
        raise ConfigError(f"{name} must be positive sizes such as (2,) or (784,), got {x_shape}")
    return shape


def _image_shape(x_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = _shape(x_shape)
    if shape not in IMAGE_SHAPES:
        raise ConfigError(
            f"the DCGAN networks take 28x28 grey images, x_shape (784,), (28, 28) or "
            f"(1, 28, 28); got {shape} (use architecture='mlp' for other data)"
        )
    return shape


def _optional_size(value: int | None, name: str, least: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(f"{name} must be None or an integer >= {least}, got {value!r}")
    return int(value)


def _check_activation(name: str) -> str:
    if name != "leaky_relu" and name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {CRITIC_ACTIVATIONS}")
    return name


def _act(name: str, h: jax.Array) -> jax.Array:
    return jax.nn.leaky_relu(h, LEAKY_SLOPE) if name == "leaky_relu" else ACTIVATIONS[name](h)


# -- layers in torch's layout ------------------------------------------------------------------


class _Layer(eqx.Module):
    """One layer's ``weight`` and ``bias`` in torch's layout: ``Linear`` ``(out, in)``,
    ``Conv2d`` ``(out, in, k, k)``, ``ConvTranspose2d`` ``(in, out, k, k)``; bias ``(out,)``."""

    weight: jax.Array
    bias: jax.Array

    def __init__(self, shape: Sequence[int], out: int, rng: np.random.Generator) -> None:
        # torch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias, fan-in =
        # dim 1 of the weight times the kernel (Kaiming uniform with a = sqrt(5)).
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        self.weight = jnp.asarray(rng.uniform(-bound, bound, tuple(shape)), dtype=float)
        self.bias = jnp.asarray(rng.uniform(-bound, bound, out), dtype=float)

    def linear(self, h: jax.Array) -> jax.Array:
        return h @ self.weight.T + self.bias  # (..., out)

    def conv(self, h: jax.Array) -> jax.Array:
        return _conv(h, self.weight) + self.bias[:, None, None]  # (n, out, H/2, W/2)

    def conv_transpose(self, h: jax.Array) -> jax.Array:
        return _conv_transpose(h, self.weight) + self.bias[:, None, None]  # (n, out, 2H, 2W)


def _linears(sizes: Sequence[int], rng: np.random.Generator) -> list[_Layer]:
    return [_Layer((b, a), b, rng) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
    """torch's ``conv2d(x, w, stride=2, padding=1)``: ``(n, in, H, W) -> (n, out, H/2, W/2)``."""
    pad = ((PADDING, PADDING),) * 2
    return jax.lax.conv_general_dilated(
        x, w, (STRIDE, STRIDE), pad, dimension_numbers=_NCHW, precision=_HIGHEST
    )


@jax.custom_vjp
def _conv_transpose(h: jax.Array, w: jax.Array) -> jax.Array:
    """torch's ``conv_transpose2d(h, w, stride=2, padding=1)``, ``w (in, out, 4, 4)``:
    ``(n, in, H, W) -> (n, out, 2H, 2W)``, the adjoint of :func:`_conv` with ``w``."""
    pad = ((KERNEL - 1 - PADDING,) * 2,) * 2
    kernel = jnp.flip(w, (2, 3)).swapaxes(0, 1)  # (out, in, 4, 4), flipped
    return jax.lax.conv_general_dilated(
        h,
        kernel,
        (1, 1),
        pad,
        lhs_dilation=(STRIDE, STRIDE),
        dimension_numbers=_NCHW,
        precision=_HIGHEST,
    )


def _conv_transpose_fwd(h: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple]:
    return _conv_transpose(h, w), (h, w)


def _conv_transpose_bwd(res: tuple, g: jax.Array) -> tuple[jax.Array, jax.Array]:
    # y = conv(., w)^T h, so <g, y> = <conv(g, w), h>: both gradients are the strided
    # convolution's (fast on XLA's CPU backend, unlike the dilated form's weight gradient).
    h, w = res
    grad_h, vjp_w = jax.vjp(lambda w: _conv(g, w), w)
    return grad_h, vjp_w(h)[0]


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _torch_name(path: tuple) -> str:
    """A tree path ``.layers[0].weight`` as torch's parameter name ``layers.0.weight``."""
    return ".".join(str(getattr(k, "name", getattr(k, "idx", k))) for k in path)


class _TorchNamed(eqx.Module):
    """Weights as numpy arrays under torch's ``named_parameters`` names, and back."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays under torch's names (``layers.0.weight``, ...)."""
        leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(self, eqx.is_array))[0]
        return {_torch_name(path): np.asarray(v) for path, v in leaves}

    def load_state_dict(self, weights: Mapping[str, Any]) -> Self:
        """A copy holding ``weights`` (keys and shapes of :meth:`state_dict`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.state_dict(), weights)
        params, static = eqx.partition(self, eqx.is_array)
        paths, treedef = jax.tree_util.tree_flatten_with_path(params)
        leaves = [jnp.asarray(weights[_torch_name(p)], dtype=leaf.dtype) for p, leaf in paths]
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, leaves), static)


def _one_hot(y: jax.Array, num_classes: int, like: jax.Array) -> jax.Array:
    """``onehot(y)`` in ``like``'s dtype, ``(..., C)``."""
    if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
        raise DataError(
            f"labels must be integer class indices 0..{num_classes - 1}, got dtype "
            f"{jnp.result_type(y)}; convert with y.astype(int)"
        )
    return jax.nn.one_hot(y, num_classes, dtype=like.dtype)


def _rows(x: jax.Array, x_shape: tuple[int, ...], who: str) -> jax.Array:
    """``x (..., *x_shape)`` as ``(..., prod(x_shape))``."""
    shape = jnp.shape(x)
    if tuple(shape[len(shape) - len(x_shape) :]) != x_shape:
        want = ", ".join(map(str, x_shape))
        raise DataError(f"{who} must have shape (..., {want}), got {shape}")
    return jnp.reshape(x, (*shape[: len(shape) - len(x_shape)], math.prod(x_shape)))


def _input_scale(value: float) -> float:
    """A critic's ``input_scale``, checked: a positive finite number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"input_scale must be a positive finite number, got {value!r}")
    return float(value)


def _cat(parts: Sequence[jax.Array]) -> jax.Array:
    """Concatenate on the last axis, broadcasting the leading (particle, batch) dims."""
    shape = jnp.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return jnp.concatenate([jnp.broadcast_to(p, (*shape, p.shape[-1])) for p in parts], -1)


# -- critics -----------------------------------------------------------------------------------


class _Critic(_TorchNamed):
    """What both critics share: the inputs beyond ``x`` (``y`` and/or ``z``) as features."""

    x_shape: tuple[int, ...] = eqx.field(static=True)
    num_classes: int | None = eqx.field(static=True)
    z_dim: int | None = eqx.field(static=True)
    input_scale: float = eqx.field(static=True)

    def _usage(self) -> str:
        extras = ["y"] * (self.num_classes is not None) + ["z"] * (self.z_dim is not None)
        return f"critic({', '.join(['x', *extras])})"

    def _conditions(self, extras: Sequence[jax.Array], like: jax.Array) -> list[jax.Array]:
        """``[onehot(y), z]`` (those the critic was built for), each ``(..., features)``."""
        wanted = (self.num_classes is not None) + (self.z_dim is not None)
        if len(extras) != wanted:
            raise ConfigError(
                f"this critic is called as {self._usage()}, got {1 + len(extras)} inputs"
            )
        out, extras = [], list(extras)
        if self.num_classes is not None:
            out.append(_one_hot(extras.pop(0), self.num_classes, like))
        if self.z_dim is not None:
            out.append(_rows(extras.pop(0), (self.z_dim,), "the critic's z"))
        return out


class MLPCritic(_Critic):
    """A critic ``f(x)`` (or ``f(x, y)``, ``f(x, z)``): an MLP on ``[x, onehot(y), z]``.

    ``h_l = act(W_l h_{l-1} + b_l)``, score ``W_L h_{L-1} + b_L``, one per example: the toy
    2-D critics of WGAN-GP (Gulrajani et al. 2017), VEEGAN and PacGAN are of this form. With
    ``num_classes`` it is called as ``critic(x, y)`` (cGAN, Mirza & Osindero 2014), with
    ``z_dim`` as ``critic(x, z)`` (BiGAN/ALI's joint critic), with both as
    ``critic(x, y, z)``. Weights ``layers.{i}.weight`` ``(out, in)`` and ``layers.{i}.bias``.

    Args:
        x_dim: Features of ``x``; inputs are ``(..., x_dim)``.
        hidden: Hidden widths.
        num_classes: Number of classes of a conditional critic (labels are integers).
        z_dim: Width of the latent of a joint critic.
        activation: ``"leaky_relu"`` (slope 0.2), ``"relu"``, ``"tanh"``, ``"softplus"`` or
            ``"elu"``.
        seed: Seed of numpy's generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: An unknown activation, a width below 1, ``num_classes < 2``, an
            ``input_scale`` that is not a positive finite number.
    """

    layers: list[_Layer]
    activation: str = eqx.field(static=True)

    def __init__(
        self,
        x_dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        num_classes: int | None = None,
        z_dim: int | None = None,
        activation: str = "leaky_relu",
        seed: int = 0,
        input_scale: float = 1.0,
    ) -> None:
        self.x_shape = _shape(x_dim, "x_dim")
        self.input_scale = _input_scale(input_scale)
        self.num_classes = _optional_size(num_classes, "num_classes", 2)
        self.z_dim = _optional_size(z_dim, "z_dim", 1)
        extra = (self.num_classes or 0) + (self.z_dim or 0)
        sizes = [self.x_shape[0] + extra, *(int(h) for h in hidden), 1]
        if min(sizes) < 1:
            raise ConfigError(f"hidden widths must be positive, got {tuple(hidden)}")
        self.activation = _check_activation(activation)
        self.layers = _linears(sizes, np.random.default_rng(seed))

    def __call__(self, x: jax.Array, *extras: jax.Array) -> jax.Array:
        """Scores ``(...)`` of ``x (..., x_dim)`` (and ``y (...)``, ``z (..., z_dim)``).

        Raises:
            DataError: ``x`` or ``z`` of another width, labels not integers.
            ConfigError: Another number of inputs than the critic was built for.
        """
        h = _rows(x, self.x_shape, "MLPCritic's x") * self.input_scale
        h = _cat([h, *self._conditions(extras, h)])
        *hidden, last = self.layers
        for layer in hidden:
            h = _act(self.activation, layer.linear(h))
        return last.linear(h)[..., 0]


class DCGANCritic(_Critic):
    """DCGAN critic for 28x28 grey images (Radford et al. 2015, as in the MNIST critic of
    Gulrajani et al. 2017's WGAN-GP code), without batch normalisation:

    ``(1, 28, 28) -> Conv 4x4/2 (C, 14, 14) -> LeakyReLU -> Conv 4x4/2 (2C, 7, 7) ->
    LeakyReLU -> flatten -> Linear -> score``, LeakyReLU slope 0.2.

    A conditional (``num_classes``) or joint (``z_dim``) critic appends ``onehot(y)`` and/or
    ``z`` to the flattened features and scores them with a small MLP head
    ``Linear(2C*49 + k, hidden) -> LeakyReLU -> Linear(hidden, 1)``: a linear head would add
    only a per-class offset (or a linear term in ``z``) to the score, blind to how ``x`` and
    ``y``/``z`` go together. Weights ``convs.{0,1}.weight`` ``(out, in, 4, 4)``,
    ``convs.{0,1}.bias``, ``head.{i}.weight`` ``(out, in)``, ``head.{i}.bias``.

    Args:
        x_shape: Shape of one example: ``(784,)`` (ppgen's flattened MNIST rows),
            ``(28, 28)`` or ``(1, 28, 28)``; inputs are ``(..., *x_shape)``.
        channels: ``C``, the channels of the first convolution.
        num_classes: Number of classes of a conditional critic, called as ``critic(x, y)``.
        z_dim: Width of the latent of a joint critic, called as ``critic(x, z)``.
        hidden: Width of the conditioned head's hidden layer (no effect without ``y``/``z``).
        seed: Seed of numpy's generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: Another ``x_shape``, a size below 1, ``num_classes < 2``, an
            ``input_scale`` that is not a positive finite number.
    """

    convs: list[_Layer]
    head: list[_Layer]

    def __init__(
        self,
        x_shape: int | Sequence[int] = (784,),
        channels: int = 64,
        num_classes: int | None = None,
        z_dim: int | None = None,
        hidden: int = 256,
        seed: int = 0,
        input_scale: float = 1.0,
    ) -> None:
        self.x_shape = _image_shape(x_shape)
        self.input_scale = _input_scale(input_scale)
        self.num_classes = _optional_size(num_classes, "num_classes", 2)
        self.z_dim = _optional_size(z_dim, "z_dim", 1)
        extra = (self.num_classes or 0) + (self.z_dim or 0)
        c = _optional_size(channels, "channels", 1)
        rng = np.random.default_rng(seed)
        k = (KERNEL, KERNEL)
        self.convs = [_Layer((c, 1, *k), c, rng), _Layer((2 * c, c, *k), 2 * c, rng)]
        features = 2 * c * 7 * 7  # (2C, 7, 7) flattened
        if extra:
            sizes = [features + extra, _optional_size(hidden, "hidden", 1), 1]
        else:
            sizes = [features, 1]
        self.head = _linears(sizes, rng)

    def __call__(self, x: jax.Array, *extras: jax.Array) -> jax.Array:
        """Scores ``(...)`` of images ``x (..., *x_shape)`` (and ``y (...)``, ``z (..., z_dim)``).

        Raises:
            DataError: ``x`` of another shape, ``z`` of another width, labels not integers.
            ConfigError: Another number of inputs than the critic was built for.
        """
        rows = _rows(x, self.x_shape, "DCGANCritic's x") * self.input_scale
        batch = rows.shape[:-1]
        h = rows.reshape(-1, *IMAGE)
        for conv in self.convs:
            h = jax.nn.leaky_relu(conv.conv(h), LEAKY_SLOPE)
        h = _cat([h.reshape(*batch, -1), *self._conditions(extras, rows)])
        *hidden, last = self.head
        for layer in hidden:
            h = jax.nn.leaky_relu(layer.linear(h), LEAKY_SLOPE)
        return last.linear(h)[..., 0]


# -- generators --------------------------------------------------------------------------------


class DCGANGenerator(_TorchNamed):
    """DCGAN generator network for 28x28 grey images (Radford et al. 2015, as adapted to
    MNIST in Gulrajani et al. 2017's WGAN-GP code), without batch normalisation:

    ``(in_features,) -> Linear -> (C1, 7, 7) -> ReLU -> ConvTranspose 4x4/2 (C2, 14, 14) ->
    ReLU -> ConvTranspose 4x4/2 (1, 28, 28)``, no output nonlinearity (the
    :class:`Generator` applies it). Maps any leading batch shape,
    ``(..., in_features) -> (..., 1, 28, 28)``. Weights ``linear.weight`` ``(C1*49, in)``,
    ``linear.bias``, ``convs.{0,1}.weight`` ``(in, out, 4, 4)`` (``ConvTranspose2d``'s
    layout) and ``convs.{0,1}.bias``.

    Args:
        in_features: Width of the input (``z``, or ``[z, onehot(y)]``).
        channels: ``(C1, C2)``, the channels of the 7x7 and the 14x14 feature maps.
        seed: Seed of numpy's generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: Not two channel counts, or a size below 1.
    """

    linear: _Layer
    convs: list[_Layer]
    channels: tuple[int, int] = eqx.field(static=True)

    def __init__(self, in_features: int, channels: Sequence[int] = (128, 64), seed: int = 0):
        channels = tuple(int(c) for c in channels)
        if len(channels) != 2 or min(channels) < 1 or int(in_features) < 1:
            raise ConfigError(
                f"a DCGAN generator needs in_features >= 1 and two positive channel counts "
                f"(7x7, 14x14), got {in_features!r} and {channels}"
            )
        self.channels = channels
        c1, c2 = channels
        rng = np.random.default_rng(seed)
        self.linear = _Layer((c1 * 7 * 7, int(in_features)), c1 * 7 * 7, rng)
        k = (KERNEL, KERNEL)
        self.convs = [_Layer((c1, c2, *k), c2, rng), _Layer((c2, 1, *k), 1, rng)]

    def _deconvolve(self, h: jax.Array) -> jax.Array:
        batch = h.shape[:-1]
        h = jax.nn.relu(h.reshape(-1, self.channels[0], 7, 7))  # (n, C1, 7, 7)
        h = jax.nn.relu(self.convs[0].conv_transpose(h))  # (n, C2, 14, 14)
        return self.convs[1].conv_transpose(h).reshape(*batch, *IMAGE)  # (..., 1, 28, 28)

    def __call__(self, z: jax.Array) -> jax.Array:
        """Pre-activation images ``(..., 1, 28, 28)`` of inputs ``(..., in_features)``."""
        return self._deconvolve(self.linear.linear(z))

    def call_concat(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """``self([a, b])`` for inputs concatenated on the last axis, without building the
        concatenation (as :meth:`MLP.call_concat`): the leading dims of ``a`` and ``b``
        broadcast."""
        w, n_a = self.linear.weight, a.shape[-1]
        return self._deconvolve(a @ w[:, :n_a].T + b @ w[:, n_a:].T + self.linear.bias)


class Generator(LatentVariableModel):
    """An implicit generative model: ``z ~ N(0, I)``, ``x = G(z)`` (Goodfellow et al. 2014),
    or ``x = G(z, onehot(y))`` with ``y ~ Cat(1/C)`` observed (cGAN, Mirza & Osindero 2014).

    ``model(x, y=None, num_data=None)`` has, in the ``"data"`` plate, the sites ``"y"``
    (conditional only, observed), ``"z"`` (event dim 1) and the deterministic ``"x"`` of
    the data's shape ``(batch, *x_shape)``; the data ``x`` give only the batch size. The
    guide is empty: there is nothing to infer. The network is the param site
    ``generator$params``, weights ``generator.layers.{i}.weight`` (``"mlp"``) or
    ``generator.linear.weight``, ``generator.convs.{0,1}.weight`` (``"dcgan"``).

    Architectures:

    - ``"mlp"``: ``[z, onehot(y)] -> hidden (ReLU) ... -> prod(x_shape)``, the output
      nonlinearity, reshaped to ``x_shape`` (the 2-D generators of VEEGAN and PacGAN are
      2-3 ReLU layers of 128-400 units).
    - ``"dcgan"``: :class:`DCGANGenerator` (``hidden`` = its channels ``(C1, C2)``),
      then the output nonlinearity, reshaped to ``x_shape``.

    Args:
        x_shape: Shape of one example: ``(2,)`` for 2-D toy data, ``(784,)`` for MNIST as
            ppgen passes it to every model (flattened rows ``(batch, 784)``), or
            ``(1, 28, 28)`` / ``(28, 28)`` for image batches.
        z_dim: Width of ``z``; ``None``: 2 for 2-D data, else 64.
        architecture: ``"mlp"`` or ``"dcgan"`` (28x28 grey images only).
        hidden: ``"mlp"``: hidden widths, default ``(128, 128, 128)``; ``"dcgan"``: the
            channels ``(C1, C2)`` of the 7x7 and 14x14 maps, default ``(128, 64)``.
        num_classes: Number of classes of a class-conditional generator (``y`` required).
        output: ``"sigmoid"`` (grey values in (0, 1)) or ``"identity"`` (real data).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: An unknown architecture or output, a DCGAN on other than 28x28 images,
            a size below 1, ``num_classes < 2``.
    """

    nets = ("generator",)

    def __init__(
        self,
        x_shape: int | Sequence[int],
        z_dim: int | None = None,
        architecture: str = "mlp",
        hidden: Sequence[int] | None = None,
        num_classes: int | None = None,
        output: str = "sigmoid",
        seed: int = 0,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown architecture {architecture!r}; choose one of {ARCHITECTURES}"
            )
        if output not in OUTPUTS:
            raise ConfigError(f"unknown output {output!r}; choose one of {OUTPUTS}")
        shape = _image_shape(x_shape) if architecture == "dcgan" else _shape(x_shape)
        self.x_shape, self.x_dim = shape, math.prod(shape)
        self.architecture, self.output = architecture, output
        default_z = 2 if self.x_dim == 2 else 64
        self.z_dim = _optional_size(default_z if z_dim is None else z_dim, "z_dim", 1)
        self.num_classes = _optional_size(num_classes, "num_classes", 2)
        n_in = self.z_dim + (self.num_classes or 0)
        (net_seed,) = spawn_seeds(seed, 1)
        if architecture == "dcgan":
            channels = (128, 64) if hidden is None else hidden
            self.generator = DCGANGenerator(n_in, channels, seed=net_seed)
        else:
            sizes = [n_in, *((128, 128, 128) if hidden is None else hidden), self.x_dim]
            self.generator = MLP(sizes, "relu", seed=net_seed)

    def _check_data(self, x: jax.Array) -> jax.Array:
        if tuple(jnp.shape(x)[1:]) != self.x_shape:
            raise DataError(
                f"x must be an array of shape (batch, {', '.join(map(str, self.x_shape))})"
                f" for this generator, got {jnp.shape(x)}"
            )
        return x

    def check_y(self, y: jax.Array | None, batch: int) -> None:
        """Raise unless ``y`` suits this generator: ``batch`` integer labels in range for a
        conditional one (the range checked on concrete arrays), ``None`` else.

        Raises:
            DataError: Missing, misshapen, non-integer or out-of-range labels, or labels
                given to an unconditional generator.
        """
        if self.num_classes is None:
            if y is not None:
                raise DataError("this generator is unconditional; build it with num_classes")
            return
        if y is None:
            raise DataError(
                f"this generator is class-conditional (num_classes={self.num_classes}): pass "
                "the labels y"
            )
        if not jnp.issubdtype(jnp.result_type(y), jnp.integer):
            raise DataError(
                f"y must be an integer array of class indices 0..{self.num_classes - 1}, "
                f"got dtype {jnp.result_type(y)}"
            )
        if jnp.shape(y) != (batch,):
            raise DataError(
                f"y must hold one label per example, shape ({batch},), got {jnp.shape(y)}"
            )
        if not_jax_tracer(y) and batch:
            y_np = np.asarray(y)  # numpy's reductions: not staged when called inside a trace
            lo, hi = int(y_np.min()), int(y_np.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"labels must lie in 0..{self.num_classes - 1}, got values in [{lo}, {hi}]"
                )

    def _generate(self, net: Callable, z: jax.Array, y: jax.Array | None) -> jax.Array:
        """``G(z[, onehot(y)])`` with the output nonlinearity, ``(..., *x_shape)``; ``net``
        is the network or its ``call_concat``."""
        out = net(z) if y is None else net(z, _one_hot(y, self.num_classes, z))
        if self.output == "sigmoid":
            out = jax.nn.sigmoid(out)
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def model(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """``[y ~ Cat(1/C)]``, ``z ~ N(0, I)``, ``x = G(z[, y])`` (deterministic) for a
        minibatch; ``x`` gives the batch size, ``y`` the observed labels (conditional).

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``; labels missing (conditional), given
                (unconditional), or not ``batch`` integers in ``0..C-1``.
        """
        x = self._check_data(x)
        self.check_y(y, x.shape[0])
        generator = eqx_module("generator", self.generator)
        net = generator if self.num_classes is None else generator.call_concat
        with self._plate(x, num_data):
            if self.num_classes is not None:
                prior = dist.Categorical(logits=jnp.zeros(self.num_classes))
                y = numpyro.sample("y", prior, obs=y)
            prior = dist.Normal(jnp.zeros(self.z_dim), 1.0).to_event(1)
            z = numpyro.sample("z", prior)  # (..., batch, z_dim)
            numpyro.deterministic("x", self._generate(net, z, y))  # (..., batch, *x_shape)

    def guide(self, x: jax.Array, y: jax.Array | None = None, num_data: int | None = None) -> None:
        """No sites: a generator has nothing to infer (``z`` is drawn from its prior)."""

    def generate(self, z: jax.Array, y: jax.Array | None = None) -> jax.Array:
        """``x = G(z[, y])``, ``(..., *x_shape)``, for latents ``(..., z_dim)`` and (conditional)
        integer labels broadcasting against ``z``'s leading dims.

        Raises:
            DataError: ``z`` of another width; labels missing, given, not integers or out of
                range.
        """
        z = _rows(z, (self.z_dim,), "the generator's z")
        if y is None or self.num_classes is None:
            self.check_y(y, 0)  # refuses labels missing (conditional) or given (unconditional)
            return self._generate(self.generator, z, None)
        y = jnp.asarray(y)
        self.check_y(y.reshape(-1), y.size)
        return self._generate(self.generator.call_concat, z, y)

    def sample(
        self, rng_key: jax.Array, n: int, y: int | Sequence[int] | jax.Array | None = None
    ) -> jax.Array:
        """``n`` draws ``x = G(z)``, ``z ~ N(0, I)``, shape ``(n, *x_shape)``.

        Args:
            rng_key: PRNG key of the draws of ``z``.
            n: Number of samples.
            y: Conditional only: one label, ``n`` labels, or ``None`` (classes ``0, 1, ...,
                C-1, 0, ...`` in turn).

        Raises:
            DataError: Labels for an unconditional generator, or invalid labels.
        """
        if self.num_classes is not None:
            y = jnp.arange(n) % self.num_classes if y is None else jnp.asarray(y)
            y = jnp.broadcast_to(y, (n,)) if y.ndim == 0 else y
        self.check_y(y, n)
        return self.generate(jax.random.normal(rng_key, (n, self.z_dim)), y)
