"""Implicit generative models (generators) and the critics that train them, on Pyro.

A generator (Goodfellow et al. 2014, "Generative adversarial nets") is an ordinary model
program whose ``x`` is a deterministic function of its latents: ``z ~ N(0, I)`` and
``x = G(z)`` at a ``deterministic`` site. It has no density of ``x``, so it is fitted by a
likelihood-free objective (GAN, WGAN-GP, MMD, ...) that runs the model under a trace, reads
the site ``"x"`` and compares it with the data through a **critic**: a plain network the
objective owns and registers itself (``pyro.module("critic", critic)``), called as
``critic(x)``, ``critic(x, y)`` (class-conditional, Mirza & Osindero 2014) or
``critic(x, z)`` (the joint critic of BiGAN/ALI, Donahue et al. 2016, Dumoulin et al. 2016)
and returning one score per example.

Networks follow torch's default initialisation (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for
weights and biases) drawn from a local :class:`torch.Generator`, and keep torch's names and
layouts, so their weights copy one to one into the NumPyro twins
(:mod:`ppgen.models.numpyro.gan`). No batch normalisation anywhere: the programs stay
stateless, and WGAN-GP's gradient penalty forbids it in the critic (Gulrajani et al. 2017).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import spawn_seeds
from ppgen.models.pyro.base import LatentVariableModel
from ppgen.models.pyro.nets import ACTIVATIONS, MLP
from ppgen.models.pyro.params import local_method

__all__ = ["DCGANCritic", "DCGANGenerator", "Generator", "MLPCritic"]

ARCHITECTURES = ("mlp", "dcgan")
OUTPUTS = ("sigmoid", "identity")
CRITIC_ACTIVATIONS = ("leaky_relu", *sorted(ACTIVATIONS))
LEAKY_SLOPE = 0.2  # LeakyReLU's negative slope in every critic (Radford et al. 2015)
IMAGE = (1, 28, 28)  # the DCGAN networks' grey 28 x 28 image
IMAGE_SHAPES = ((784,), (28, 28), IMAGE)  # the example shapes they accept
# Every convolution is 4 x 4 with stride 2 and padding 1: it halves or doubles the side.
KERNEL, STRIDE, PADDING = 4, 2, 1


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


def _fill(tensor: torch.Tensor, fan_in: int, generator: torch.Generator) -> None:
    """``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` in place: torch's default for ``Linear``,
    ``Conv2d`` and ``ConvTranspose2d`` weights (Kaiming uniform, ``a = sqrt(5)``) and biases."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)


def _layer(cls: type[nn.Module], *args: int, generator: torch.Generator, **kw: int) -> nn.Module:
    """``cls(*args, **kw)`` with torch's default initialisation drawn from ``generator``
    (``skip_init``: torch's global generator is neither read nor advanced)."""
    layer = nn.utils.skip_init(cls, *args, **kw)
    # torch's fan-in: dim 1 of the weight times the kernel (ConvTranspose2d's is (in, out, ...)).
    fan_in = layer.weight[0].numel()
    _fill(layer.weight, fan_in, generator)
    _fill(layer.bias, fan_in, generator)
    return layer


def _linears(sizes: Sequence[int], generator: torch.Generator) -> nn.ModuleList:
    pairs = zip(sizes[:-1], sizes[1:], strict=True)
    return nn.ModuleList(_layer(nn.Linear, a, b, generator=generator) for a, b in pairs)


def _activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE)
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; choose one of {CRITIC_ACTIVATIONS}")
    return ACTIVATIONS[name]()


def _one_hot(y: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """``onehot(y)`` in ``like``'s dtype, ``(..., C)``."""
    if not torch.is_tensor(y) or y.dtype.is_floating_point or y.dtype.is_complex:
        raise DataError(
            f"labels must be an integer tensor of class indices 0..{num_classes - 1}, got "
            f"{y.dtype if torch.is_tensor(y) else type(y).__name__}; convert with y.long()"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"labels must lie in 0..{num_classes - 1}, got values in [{int(y.min())}, "
            f"{int(y.max())}]"
        )
    return F.one_hot(y.long(), num_classes).to(like.dtype)


def _rows(x: torch.Tensor, x_shape: tuple[int, ...], who: str) -> torch.Tensor:
    """``x (..., *x_shape)`` as ``(..., prod(x_shape))``."""
    if not torch.is_tensor(x):
        raise DataError(f"{who} takes a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[x.dim() - len(x_shape) :]) != x_shape:
        want = ", ".join(map(str, x_shape))
        raise DataError(f"{who} must have shape (..., {want}), got {tuple(x.shape)}")
    return x.reshape(*x.shape[: x.dim() - len(x_shape)], math.prod(x_shape))


class _Critic(nn.Module):
    """What both critics share: the inputs beyond ``x`` (``y`` and/or ``z``) as features."""

    x_shape: tuple[int, ...]
    num_classes: int | None
    z_dim: int | None
    input_scale: float

    def _init_conditions(self, num_classes: int | None, z_dim: int | None) -> int:
        """Set ``num_classes``, ``z_dim``; return the width of the conditioning features."""
        self.num_classes = _optional_size(num_classes, "num_classes", 2)
        self.z_dim = _optional_size(z_dim, "z_dim", 1)
        return (self.num_classes or 0) + (self.z_dim or 0)

    def _usage(self) -> str:
        extras = ["y"] * (self.num_classes is not None) + ["z"] * (self.z_dim is not None)
        return f"critic({', '.join(['x', *extras])})"

    def _conditions(self, extras: Sequence[torch.Tensor], like: torch.Tensor) -> list:
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


def _input_scale(value: float) -> float:
    """A critic's ``input_scale``, checked: a positive finite number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ConfigError(f"input_scale must be a positive finite number, got {value!r}")
    return float(value)


def _cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate on the last axis, broadcasting the leading (particle, batch) dims."""
    shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], dim=-1)


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
        seed: Seed of the local generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: An unknown activation, a width below 1, ``num_classes < 2``, an
            ``input_scale`` that is not a positive finite number.
    """

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
        super().__init__()
        self.x_shape = _shape(x_dim, "x_dim")
        self.input_scale = _input_scale(input_scale)
        extra = self._init_conditions(num_classes, z_dim)
        sizes = [self.x_shape[0] + extra, *(int(h) for h in hidden), 1]
        if min(sizes) < 1:
            raise ConfigError(f"hidden widths must be positive, got {tuple(hidden)}")
        self.activation = _activation(activation)
        self.layers = _linears(sizes, torch.Generator().manual_seed(int(seed)))

    def forward(self, x: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        """Scores ``(...)`` of ``x (..., x_dim)`` (and ``y (...)``, ``z (..., z_dim)``).

        Raises:
            DataError: ``x`` or ``z`` of another width, labels not integers.
            ConfigError: Another number of inputs than the critic was built for.
        """
        h = _rows(x, self.x_shape, "MLPCritic's x") * self.input_scale
        h = _cat([h, *self._conditions(extras, h)])
        *hidden, last = self.layers
        for layer in hidden:
            h = self.activation(layer(h))
        return last(h)[..., 0]


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
        seed: Seed of the local generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: Another ``x_shape``, a size below 1, ``num_classes < 2``, an
            ``input_scale`` that is not a positive finite number.
    """

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
        super().__init__()
        self.x_shape = _image_shape(x_shape)
        self.input_scale = _input_scale(input_scale)
        extra = self._init_conditions(num_classes, z_dim)
        c = _optional_size(channels, "channels", 1)
        generator = torch.Generator().manual_seed(int(seed))
        conv = dict(kernel_size=KERNEL, stride=STRIDE, padding=PADDING, generator=generator)
        self.convs = nn.ModuleList(
            [_layer(nn.Conv2d, 1, c, **conv), _layer(nn.Conv2d, c, 2 * c, **conv)]
        )
        features = 2 * c * 7 * 7  # (2C, 7, 7) flattened
        if extra:
            sizes = [features + extra, _optional_size(hidden, "hidden", 1), 1]
        else:
            sizes = [features, 1]
        self.head = _linears(sizes, generator)

    def forward(self, x: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        """Scores ``(...)`` of images ``x (..., *x_shape)`` (and ``y (...)``, ``z (..., z_dim)``).

        Raises:
            DataError: ``x`` of another shape, ``z`` of another width, labels not integers.
            ConfigError: Another number of inputs than the critic was built for.
        """
        rows = _rows(x, self.x_shape, "DCGANCritic's x") * self.input_scale
        batch = rows.shape[:-1]
        h = rows.reshape(-1, *IMAGE)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), LEAKY_SLOPE)
        h = _cat([h.reshape(*batch, -1), *self._conditions(extras, rows)])
        *hidden, last = self.head
        for layer in hidden:
            h = F.leaky_relu(layer(h), LEAKY_SLOPE)
        return last(h)[..., 0]


class DCGANGenerator(nn.Module):
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
        seed: Seed of the local generator that draws the initial weights.
        input_scale: A fixed factor on ``x`` before the first layer (e.g. ``1 / L`` for a
            flow's dequantised pixels ``k + u`` in ``[0, L]``); 1: none.

    Raises:
        ConfigError: Not two channel counts, or a size below 1.
    """

    def __init__(self, in_features: int, channels: Sequence[int] = (128, 64), seed: int = 0):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 2 or min(channels) < 1 or int(in_features) < 1:
            raise ConfigError(
                f"a DCGAN generator needs in_features >= 1 and two positive channel counts "
                f"(7x7, 14x14), got {in_features!r} and {channels}"
            )
        self.channels = channels
        c1, c2 = channels
        generator = torch.Generator().manual_seed(int(seed))
        self.linear = _layer(nn.Linear, int(in_features), c1 * 7 * 7, generator=generator)
        conv = dict(kernel_size=KERNEL, stride=STRIDE, padding=PADDING, generator=generator)
        self.convs = nn.ModuleList(
            [_layer(nn.ConvTranspose2d, c1, c2, **conv), _layer(nn.ConvTranspose2d, c2, 1, **conv)]
        )

    def _deconvolve(self, h: torch.Tensor) -> torch.Tensor:
        batch = h.shape[:-1]
        h = F.relu(h.reshape(-1, self.channels[0], 7, 7))  # (n, C1, 7, 7)
        h = F.relu(self.convs[0](h))  # (n, C2, 14, 14)
        return self.convs[1](h).reshape(*batch, *IMAGE)  # (..., 1, 28, 28)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Pre-activation images ``(..., 1, 28, 28)`` of inputs ``(..., in_features)``."""
        return self._deconvolve(self.linear(z))

    def call_concat(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``self(cat([a, b], -1))`` without building the concatenation (as
        :meth:`MLP.call_concat`): the leading dims of ``a`` and ``b`` broadcast."""
        w, n_a = self.linear.weight, a.shape[-1]
        return self._deconvolve(a @ w[:, :n_a].T + b @ w[:, n_a:].T + self.linear.bias)


class Generator(LatentVariableModel):
    """An implicit generative model: ``z ~ N(0, I)``, ``x = G(z)`` (Goodfellow et al. 2014),
    or ``x = G(z, onehot(y))`` with ``y ~ Cat(1/C)`` observed (cGAN, Mirza & Osindero 2014).

    ``model(x, y=None, num_data=None)`` has, in the ``"data"`` plate, the sites ``"y"``
    (conditional only, observed), ``"z"`` (event dim 1) and the deterministic ``"x"`` of
    the data's shape ``(batch, *x_shape)``; the data ``x`` give only the batch size. The
    guide is empty: there is nothing to infer. The network is the param site group
    ``generator$$$...``, weights ``generator.layers.{i}.weight`` (``"mlp"``) or
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
        super().__init__()
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

    def _check_data(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.x_shape:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise DataError(
                f"x must be a torch.Tensor of shape (batch, {', '.join(map(str, self.x_shape))})"
                f" for this generator, got {shape}"
            )
        return x

    def check_y(self, y: torch.Tensor | None, batch: int) -> None:
        """Raise unless ``y`` suits this generator: ``batch`` integer labels in range for a
        conditional one (the range checked while Pyro's validation is on), ``None`` else.

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
        if not torch.is_tensor(y) or y.dtype.is_floating_point or y.dtype.is_complex:
            raise DataError(
                f"y must be an integer tensor of class indices 0..{self.num_classes - 1}, "
                f"got {y.dtype if torch.is_tensor(y) else type(y).__name__}"
            )
        if tuple(y.shape) != (batch,):
            raise DataError(
                f"y must hold one label per example, shape ({batch},), got {tuple(y.shape)}"
            )
        if dist.is_validation_enabled() and y.numel():
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"labels must lie in 0..{self.num_classes - 1}, got values in [{lo}, {hi}]"
                )

    def _zeros(self, *shape: int) -> torch.Tensor:
        """Zeros in the network's dtype and device (the data's values are never read)."""
        weight = next(self.generator.parameters())
        return torch.zeros(shape, dtype=weight.dtype, device=weight.device)

    def _generate(self, net: Callable, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``G(z[, onehot(y)])`` with the output nonlinearity, ``(..., *x_shape)``; ``net``
        is the network's ``forward`` or ``call_concat``."""
        out = net(z) if y is None else net(z, _one_hot(y, self.num_classes, z))
        if self.output == "sigmoid":
            out = torch.sigmoid(out)
        return out.reshape(*z.shape[:-1], *self.x_shape)

    def model(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """``[y ~ Cat(1/C)]``, ``z ~ N(0, I)``, ``x = G(z[, y])`` (deterministic) for a
        minibatch; ``x`` gives the batch size, ``y`` the observed labels (conditional).

        Raises:
            DataError: ``x`` not ``(batch, *x_shape)``; labels missing (conditional), given
                (unconditional), or not ``batch`` integers in ``0..C-1``.
        """
        x = self._check_data(x)
        self.check_y(y, len(x))
        method = "forward" if self.num_classes is None else "call_concat"
        net = local_method("generator", self.generator, method)
        with self._plate(x, num_data):
            if self.num_classes is not None:
                prior = dist.Categorical(logits=self._zeros(self.num_classes))
                y = pyro.sample("y", prior, obs=y)
            prior = dist.Normal(self._zeros(len(x), self.z_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)  # (..., batch, z_dim)
            x_gen = self._generate(net, z, y)  # (..., batch, *x_shape)
            pyro.deterministic("x", x_gen, event_dim=len(self.x_shape))

    def guide(
        self, x: torch.Tensor, y: torch.Tensor | None = None, num_data: int | None = None
    ) -> None:
        """No sites: a generator has nothing to infer (``z`` is drawn from its prior)."""

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
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
        flat = y.reshape(-1) if torch.is_tensor(y) else y
        self.check_y(flat, flat.numel() if torch.is_tensor(y) else 0)
        return self._generate(self.generator.call_concat, z, y)

    @torch.no_grad()
    def sample(self, n: int, y: int | Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``n`` draws ``x = G(z)``, ``z ~ N(0, I)`` (torch's global RNG), ``(n, *x_shape)``.

        Args:
            n: Number of samples.
            y: Conditional only: one label, ``n`` labels, or ``None`` (classes ``0, 1, ...,
                C-1, 0, ...`` in turn).

        Raises:
            DataError: Labels for an unconditional generator, or invalid labels.
        """
        if self.num_classes is not None:
            y = torch.arange(n) % self.num_classes if y is None else torch.as_tensor(y)
            y = y.expand(n) if y.dim() == 0 else y
        self.check_y(y, n)
        return self.generate(torch.randn_like(self._zeros(n, self.z_dim)), y)
