"""Image flows on NumPyro: Glow's pieces, RealNVP's preprocessing and multi-scale architecture.

Every transform here is a :class:`numpyro.distributions.transforms.Transform` and a pytree
(arrays and Equinox networks are children, sizes are static), on events ``(..., C, H, W)``
(``ActNorm``, ``Dequantize`` and ``Logit`` also on vectors, ``event_dim=1``), so a user
writes an image flow the way NumPyro spells any flow::

    base = dist.Normal(jnp.zeros((1, 28, 28)), 1.0).to_event(3)
    flow = dist.TransformedDistribution(base, [*glow((1, 28, 28)), Logit(0.05).inv,
                                                Dequantize().inv])
    flow.log_prob(Dequantize().add_noise(rng_key, x))  # x: 8-bit values, 8-bit space

Transforms map noise to data (forward = sampling), as in ``TransformedDistribution``;
``Dequantize`` and ``Logit`` are written in the data-to-noise direction of the papers, hence
their ``.inv``. Multi-scale (Dinh et al. 2016, section 3.6) keeps every event the shape of the
data: :class:`Squeezed` runs its transforms at half resolution and puts the pixels back,
:class:`FactorOut` runs its transforms on the first channels and passes the others (the
factored-out half) straight to the Normal base, so the base is one ``Normal`` over
``(C, H, W)`` whatever the number of scales. The mirror of ``ppgen.models.pyro.image_flows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform

from ppgen.errors import ConfigError, DataError
from ppgen.models.conventions import check_weights
from ppgen.models.image_flows import (
    GLOW_KERNELS,
    LEVELS,
    Layer,
    check_8bit,
    check_conditioner,
    check_levels,
    conditioner_name,
    conv_weights,
    glow_plan,
    lu_weights,
    realnvp_plan,
    squeeze_shape,
)
from ppgen.models.numpyro.coupling import Affine, Coupling

__all__ = [
    "ActNorm",
    "ConvNet",
    "Dequantize",
    "FactorOut",
    "GlowNet",
    "Invertible1x1Conv",
    "Logit",
    "Squeeze",
    "Squeezed",
    "from_plan",
    "glow",
    "initialize_flow",
    "multiscale_realnvp",
    "squeeze",
    "unsqueeze",
]


def _array(a: np.ndarray) -> jax.Array:
    return jnp.asarray(np.asarray(a), dtype=float)


def _check_event_dim(event_dim: int) -> int:
    if event_dim not in (1, 3):
        raise ConfigError(f"event_dim must be 1 (vectors) or 3 (images), got {event_dim!r}")
    return int(event_dim)


class ImageTransform(Transform):
    """Base of this module's transforms: bijective, ``event_dim``-dimensional real events,
    numpy weights under the Pyro twin's ``named_parameters()`` names.

    A subclass lists its weight arrays in ``_weights`` (attribute names = weight keys); its
    pytree children are those arrays plus its ``_children`` (other arrays, networks, parts).
    """

    bijective = True
    event_dim: int = 3
    _weights: tuple[str, ...] = ()
    _children: tuple[str, ...] = ()
    _static: tuple[str, ...] = ("event_dim",)

    def __init__(self, event_dim: int = 3) -> None:
        self.event_dim = event_dim

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self.event_dim)

    @property
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self.event_dim)

    def tree_flatten(self):
        names = self._weights + self._children
        aux = {k: getattr(self, k) for k in self._static}
        return tuple(getattr(self, k) for k in names), (names, aux)

    def get_weights(self) -> dict[str, np.ndarray]:
        """The weights as numpy arrays, by the Pyro twin's ``named_parameters()`` names."""
        return {k: np.array(getattr(self, k)) for k in self._weights}

    def set_weights(self, weights: dict[str, np.ndarray]) -> ImageTransform:
        """A copy of this transform holding ``weights`` (keys and shapes of
        :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        return self._replace(
            **{k: jnp.asarray(weights[k], dtype=getattr(self, k).dtype) for k in self._weights}
        )

    def _replace(self, **children: object) -> ImageTransform:
        """A copy with some pytree children (weight arrays, parts) replaced, traceable."""
        leaves, (names, aux) = self.tree_flatten()
        new = [children.get(k, v) for k, v in zip(names, leaves, strict=True)]
        return type(self).tree_unflatten((names, aux), new)

    def _batch(self, x: jax.Array, value: jax.Array | float) -> jax.Array:
        """``value`` broadcast to the batch shape of ``x``."""
        return jnp.broadcast_to(
            jnp.asarray(value, dtype=x.dtype), x.shape[: x.ndim - self.event_dim]
        )


class ActNorm(ImageTransform):
    """Activation normalisation (Glow, Kingma & Dhariwal 2018, section 3.1): a per-channel
    (images) or per-feature (vectors) affine map ``y = x * exp(log_scale) + loc``.

    ``log|det dy/dx| = H W sum(log_scale)`` for images ``(..., C, H, W)``, ``sum(log_scale)``
    for vectors ``(..., D)``. Starts as the identity; :meth:`initialize` sets it from data.

    Args:
        num_features: ``C`` (images) or ``D`` (vectors).
        event_dim: 3 for images, 1 for vectors.

    Raises:
        ConfigError: ``num_features < 1`` or ``event_dim`` not 1 or 3.
    """

    _weights = ("loc", "log_scale")
    _static = ("event_dim", "num_features")

    def __init__(self, num_features: int, event_dim: int = 3) -> None:
        self.event_dim = _check_event_dim(event_dim)
        if int(num_features) < 1:
            raise ConfigError(f"num_features must be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.loc = _array(np.zeros(self.num_features))
        self.log_scale = _array(np.zeros(self.num_features))

    def _view(self, p: jax.Array) -> jax.Array:
        return p[:, None, None] if self.event_dim == 3 else p

    def _check(self, x: jax.Array) -> None:
        if jnp.ndim(x) < self.event_dim or jnp.shape(x)[-self.event_dim] != self.num_features:
            kind = "(..., C, H, W)" if self.event_dim == 3 else "(..., D)"
            raise DataError(
                f"ActNorm({self.num_features}) takes {kind} with {self.num_features} "
                f"{'channels' if self.event_dim == 3 else 'features'}, got shape "
                f"{tuple(jnp.shape(x))}"
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        self._check(x)
        return x * jnp.exp(self._view(self.log_scale)) + self._view(self.loc)

    def _inverse(self, y: jax.Array) -> jax.Array:
        self._check(y)
        return (y - self._view(self.loc)) * jnp.exp(-self._view(self.log_scale))

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        pixels = math.prod(x.shape[-2:]) if self.event_dim == 3 else 1
        return self._batch(x, pixels * self.log_scale.sum())

    def initialize(self, y: jax.Array) -> ActNorm:
        """Glow's data-dependent initialisation: a copy with ``loc``, ``log_scale`` set so
        that the inverse (data-to-noise direction) maps the batch ``y`` to zero mean and unit
        variance per channel (feature).

        Args:
            y: A batch on this transform's data side, ``(N, ..., C, H, W)`` or ``(N, ..., D)``.
        """
        self._check(y)
        moved = jnp.moveaxis(y, -self.event_dim, -1).reshape(-1, self.num_features)
        moved = jax.lax.stop_gradient(moved)
        return self._replace(loc=moved.mean(0), log_scale=jnp.log(moved.std(0) + 1e-6))


class Invertible1x1Conv(ImageTransform):
    """Glow's invertible 1x1 convolution, LU-parametrised (Kingma & Dhariwal 2018, 3.2):
    ``y[c] = sum_k W[c, k] x[k]`` at every pixel, ``W = P L (U + diag(sign_s * exp(log_s)))``
    with ``P`` a fixed permutation, ``L`` unit lower and ``U`` strictly upper triangular.

    ``log|det| = H W sum(log_s)``. Glow's ``exp`` keeps ``W`` invertible through training
    (Pyro's ``GeneralizedChannelPermute`` keeps the diagonal unconstrained). Starts as a
    random rotation drawn from ``seed``. ``P`` and ``sign_s`` are integer arrays, so an
    optimiser of the inexact arrays (``eqx_module``) leaves them fixed.

    Args:
        channels: ``C``.
        seed: Seed of the initial rotation (numpy; the same on both backends).

    Raises:
        ConfigError: ``channels < 1``.
    """

    _weights = ("lower", "upper", "log_s")
    _children = ("perm", "sign_s")
    _static = ("event_dim", "channels")

    def __init__(self, channels: int, seed: int = 0) -> None:
        w = lu_weights(channels, seed)
        self.event_dim = 3
        self.channels = int(channels)
        # P[perm[i], i] = 1, i.e. P = eye[:, perm]
        self.perm = jnp.asarray(np.argmax(w["permutation"], axis=0), dtype=jnp.int32)
        self.sign_s = jnp.asarray(w["sign_s"], dtype=jnp.int32)
        self.lower = _array(w["lower"])
        self.upper = _array(w["upper"])
        self.log_s = _array(w["log_s"])

    def _factors(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        eye = jnp.eye(self.channels, dtype=self.lower.dtype)
        lower = jnp.tril(self.lower, -1) + eye
        upper = jnp.triu(self.upper, 1) + jnp.diag(self.sign_s * jnp.exp(self.log_s))
        return eye[:, self.perm], lower, upper

    def weight(self) -> jax.Array:
        """``W``, ``(C, C)``: output channel by input channel (``Conv2d``'s ``(out, in)``)."""
        p, lower, upper = self._factors()
        return p @ lower @ upper

    def inverse_weight(self) -> jax.Array:
        """``W^{-1} = U^{-1} L^{-1} P^T`` by triangular solves, ``(C, C)``."""
        p, lower, upper = self._factors()
        eye = jnp.eye(self.channels, dtype=lower.dtype)
        l_inv = solve_triangular(lower, eye, lower=True, unit_diagonal=True)
        u_inv = solve_triangular(upper, eye, lower=False)
        return u_inv @ l_inv @ p.T

    def _check(self, x: jax.Array) -> None:
        if jnp.ndim(x) < 3 or jnp.shape(x)[-3] != self.channels:
            raise DataError(
                f"Invertible1x1Conv({self.channels}) takes (..., C, H, W) with C = "
                f"{self.channels}, got shape {tuple(jnp.shape(x))}"
            )

    def __call__(self, x: jax.Array) -> jax.Array:
        self._check(x)
        return jnp.einsum("ck,...khw->...chw", self.weight(), x)

    def _inverse(self, y: jax.Array) -> jax.Array:
        self._check(y)
        return jnp.einsum("ck,...khw->...chw", self.inverse_weight(), y)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        return self._batch(x, math.prod(x.shape[-2:]) * self.log_s.sum())


def squeeze(x: jax.Array) -> jax.Array:
    """2x2 space-to-depth, ``(..., C, H, W) -> (..., 4C, H/2, W/2)``; output channel
    ``4c + 2i + j`` holds pixel ``(2h + i, 2w + j)`` of channel ``c`` (torch's
    ``pixel_unshuffle`` order, Dinh et al. 2016).

    Raises:
        DataError: Not an image, or an odd height or width.
    """
    c4, h2, w2 = squeeze_shape(jnp.shape(x)[-3:])
    batch = x.shape[:-3]
    x = x.reshape(*batch, c4 // 4, h2, 2, w2, 2)
    n = len(batch)
    x = jnp.transpose(x, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(*batch, c4, h2, w2)


def unsqueeze(y: jax.Array) -> jax.Array:
    """The inverse of :func:`squeeze`, ``(..., 4C, H, W) -> (..., C, 2H, 2W)``.

    Raises:
        DataError: Not an image, or channels not a multiple of 4.
    """
    if jnp.ndim(y) < 3 or jnp.shape(y)[-3] % 4:
        raise DataError(f"unsqueeze takes (..., 4C, H, W), got shape {tuple(jnp.shape(y))}")
    c4, h2, w2 = y.shape[-3:]
    batch = y.shape[:-3]
    n = len(batch)
    y = y.reshape(*batch, c4 // 4, 2, 2, h2, w2)
    y = jnp.transpose(y, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
    return y.reshape(*batch, c4 // 4, 2 * h2, 2 * w2)


class Squeeze(ImageTransform):
    """2x2 squeeze as a transform, ``(..., C, H, W) -> (..., 4C, H/2, W/2)`` (Dinh et al.
    2016, section 3.6): a permutation of the pixels, ``log|det| = 0``.

    Raises (on call):
        DataError: An odd height or width.
    """

    def __init__(self) -> None:
        self.event_dim = 3

    def __call__(self, x: jax.Array) -> jax.Array:
        return squeeze(x)

    def _inverse(self, y: jax.Array) -> jax.Array:
        return unsqueeze(y)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        return self._batch(x, 0.0)

    def forward_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*shape[:-3], *squeeze_shape(shape[-3:]))

    def inverse_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        c4, h, w = shape[-3:]
        return (*shape[:-3], c4 // 4, 2 * h, 2 * w)


class Dequantize(ImageTransform):
    """Uniform dequantisation of 8-bit data (Theis et al. 2016; RealNVP, Glow): the data side
    holds ``x + u``, ``x`` in ``{0..255}``, ``u ~ U[0, 1)`` (:meth:`add_noise`), and the
    forward map is ``y = (x + u) / 256`` into ``[0, 1)``; with ``levels=L``, data of ``L``
    grey levels ``{0..L-1}`` and ``y = (x + u) / L``.

    ``log|det dy/dx| = -D log L`` (``D`` values per event): a flow ending in
    ``Dequantize().inv`` has its ``log_prob(x + u)`` in the 8-bit space, so
    ``ppgen.metrics.bits_per_dim(-log_prob, D)`` is the papers' bits/dim,
    ``(-log p(v) + D log 256) / (D log 2)`` for ``v = (x + u) / 256``.

    Args:
        event_dim: 3 for images, 1 for vectors.
        levels: Grey levels ``L`` of the data (256: 8-bit).

    Raises:
        ConfigError: ``levels`` not an integer >= 2.
    """

    _static = ("event_dim", "levels")

    def __init__(self, event_dim: int = 3, levels: int = LEVELS) -> None:
        self.event_dim = _check_event_dim(event_dim)
        self.levels = check_levels(levels)

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(
            constraints.interval(0.0, float(self.levels)), self.event_dim
        )

    @property
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self.event_dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x / self.levels

    def _inverse(self, y: jax.Array) -> jax.Array:
        return y * self.levels

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        size = math.prod(x.shape[x.ndim - self.event_dim :])
        return self._batch(x, -size * math.log(self.levels))

    def add_noise(self, rng_key: jax.Array, x: jax.Array | np.ndarray) -> jax.Array:
        """``x + u``, ``u ~ U[0, 1)`` drawn with ``rng_key``, in JAX's default float dtype.

        The data are checked when concrete (not under ``jit``: check them before).

        Raises:
            DataError: ``x`` is not pixel values of the levels (integers ``0..255``).
        """
        if not isinstance(x, jax.core.Tracer):
            check_8bit(np.asarray(x), self.levels)
        x = jnp.asarray(x, dtype=float)
        return x + jax.random.uniform(rng_key, x.shape, dtype=x.dtype)


class Logit(ImageTransform):
    """RealNVP's logit preprocessing (Dinh et al. 2016, section 4.1):
    ``y = logit(alpha + (1 - 2 alpha) x)`` from ``[0, 1]`` to the reals.

    ``log|det dy/dx| = sum log(1 - 2 alpha) + softplus(y) + softplus(-y)`` (the derivative of
    ``logit(p)`` is ``1 / (p (1 - p))``, with ``-log p = softplus(-y)``).

    Args:
        alpha: In ``[0, 0.5)``; keeps the logit finite at 0 and 1 (RealNVP: 0.05 on MNIST).
        event_dim: 3 for images, 1 for vectors.

    Raises:
        ConfigError: ``alpha`` outside ``[0, 0.5)``.
    """

    _static = ("event_dim", "alpha")

    def __init__(self, alpha: float = 0.05, event_dim: int = 3) -> None:
        self.event_dim = _check_event_dim(event_dim)
        if not 0.0 <= float(alpha) < 0.5:
            raise ConfigError(f"Logit alpha must be in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self.event_dim)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.scipy.special.logit(self.alpha + (1 - 2 * self.alpha) * x)

    def _inverse(self, y: jax.Array) -> jax.Array:
        return (jax.nn.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        terms = math.log(1 - 2 * self.alpha) + jax.nn.softplus(y) + jax.nn.softplus(-y)
        return terms.reshape(*y.shape[: y.ndim - self.event_dim], -1).sum(-1)


class ConvNet(eqx.Module):
    """Conditioner of image couplings: a small pre-activation ResNet (He et al. 2016; the
    RealNVP conditioner without batch normalisation) of 3x3 same-padded convolutions,
    ``conv -> [h + conv(relu(conv(relu(h))))] * blocks -> relu -> conv``, the last
    convolution zero-initialised so a coupling on it starts as the identity (Glow).

    Maps ``(..., in_channels, H, W) -> (..., out_channels, H, W)``. Weights ``convs.{i}.weight``
    ``(out, in, 3, 3)`` (torch's ``Conv2d`` layout) and ``convs.{i}.bias``, drawn by numpy
    from ``seed``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        hidden: Channels of the hidden layers.
        blocks: Residual blocks (0: two convolutions with one hidden layer between).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: A size below 1 or a negative ``blocks``.
    """

    weights: list[jax.Array]
    biases: list[jax.Array]
    blocks: int = eqx.field(static=True)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 64,
        blocks: int = 1,
        *,
        seed: int = 0,
    ) -> None:
        if int(blocks) < 0:
            raise ConfigError(f"blocks must be a non-negative integer, got {blocks!r}")
        self.blocks = int(blocks)
        sizes = [in_channels] + [hidden] * (1 + 2 * self.blocks) + [out_channels]
        pairs = conv_weights(sizes, seed)
        self.weights = [_array(w) for w, _ in pairs]
        self.biases = [_array(b) for _, b in pairs]

    def _conv(self, i: int, h: jax.Array) -> jax.Array:
        out = jax.lax.conv_general_dilated(
            h,
            self.weights[i],
            window_strides=(1, 1),
            padding="SAME",
            dimension_numbers=("NCHW", "OIHW", "NCHW"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return out + self.biases[i][:, None, None]

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the network to the last three axes of ``x`` (any leading batch shape)."""
        batch = x.shape[:-3]
        h = self._conv(0, x.reshape(-1, *x.shape[-3:]))
        for b in range(self.blocks):
            inner = self._conv(1 + 2 * b, jax.nn.relu(h))
            h = h + self._conv(2 + 2 * b, jax.nn.relu(inner))
        out = self._conv(len(self.weights) - 1, jax.nn.relu(h))
        return out.reshape(*batch, *out.shape[-3:])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays under torch's names (``convs.0.weight``, ...)."""
        return self.get_weights()

    def load_state_dict(self, weights: dict[str, np.ndarray]) -> ConvNet:
        """A copy holding ``weights`` (as :meth:`set_weights`)."""
        return self.set_weights(weights)

    def get_weights(self) -> dict[str, np.ndarray]:
        """Weights as numpy arrays under torch's names (``convs.0.weight``, ...)."""
        out = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            out[f"convs.{i}.weight"] = np.array(w)
            out[f"convs.{i}.bias"] = np.array(b)
        return out

    def set_weights(self, weights: dict[str, np.ndarray]) -> ConvNet:
        """A copy holding ``weights`` (keys and shapes of :meth:`get_weights`).

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        check_weights(self.get_weights(), weights)
        n = len(self.weights)
        ws = [jnp.asarray(weights[f"convs.{i}.weight"], self.weights[i].dtype) for i in range(n)]
        bs = [jnp.asarray(weights[f"convs.{i}.bias"], self.biases[i].dtype) for i in range(n)]
        return eqx.tree_at(lambda m: (m.weights, m.biases), self, (ws, bs))


class GlowNet(ConvNet):
    """Conditioner of Glow's affine couplings (Kingma & Dhariwal 2018, section 3.3):
    ``conv3x3 -> relu -> conv1x1 -> relu -> conv3x3``, the last convolution zero-initialised
    so a coupling on it starts as the identity. Without the ActNorm between the layers and
    the learned output scale of the paper's code. Its 1x1 middle layer makes it about as
    cheap at ``hidden`` channels as :class:`ConvNet` at a third of them.

    Maps ``(..., in_channels, H, W) -> (..., out_channels, H, W)``. Weights
    ``convs.{0,1,2}.weight`` (torch's layout: kernels ``(out, in, 3, 3)``,
    ``(out, in, 1, 1)``, ``(out, in, 3, 3)``) and ``convs.{i}.bias``, drawn by numpy from
    ``seed``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        hidden: Channels of the two hidden layers.
        seed: Seed of the initial weights.

    Raises:
        ConfigError: A size below 1.
    """

    def __init__(
        self, in_channels: int, out_channels: int, hidden: int = 512, *, seed: int = 0
    ) -> None:
        self.blocks = 0
        sizes = [in_channels, hidden, hidden, out_channels]
        pairs = conv_weights(sizes, seed, GLOW_KERNELS)
        self.weights = [_array(w) for w, _ in pairs]
        self.biases = [_array(b) for _, b in pairs]

    def __call__(self, x: jax.Array) -> jax.Array:
        """Apply the network to the last three axes of ``x`` (any leading batch shape)."""
        batch = x.shape[:-3]
        h = jax.nn.relu(self._conv(0, x.reshape(-1, *x.shape[-3:])))
        out = self._conv(2, jax.nn.relu(self._conv(1, h)))
        return out.reshape(*batch, *out.shape[-3:])


def conditioner_net(
    conditioner: str, in_channels: int, out_channels: int, hidden: int, blocks: int, seed: int
) -> ConvNet:
    """The conditioner ``conditioner`` (``"resnet"``: :class:`ConvNet` with ``blocks``;
    ``"glow"``: :class:`GlowNet`) of one image coupling."""
    if conditioner == "glow":
        return GlowNet(in_channels, out_channels, hidden, seed=seed)
    return ConvNet(in_channels, out_channels, hidden, blocks, seed=seed)


def _forward_chain(parts: Sequence[Transform], x: jax.Array) -> tuple[jax.Array, jax.Array]:
    ladj = 0.0
    for t in parts:
        y = t(x)
        ladj = ladj + t.log_abs_det_jacobian(x, y)
        x = y
    return x, ladj


def _inverse_chain(parts: Sequence[Transform], y: jax.Array) -> tuple[jax.Array, jax.Array]:
    ladj = 0.0
    for t in reversed(parts):
        x = t.inv(y)
        ladj = ladj + t.log_abs_det_jacobian(x, y)
        y = x
    return y, ladj


class _Nested(ImageTransform):
    """A transform running ``parts`` (noise-to-data order) on a part of the event.

    Its log-det is computed with the values: from the intermediates of the forward pass
    (``call_with_intermediates``, what ``TransformedDistribution`` keeps when it samples) or,
    in the data-to-noise direction, by running the inverse again, which ``jit`` merges with
    the inverse pass ``TransformedDistribution.log_prob`` has just run (the same operations).
    """

    _children = ("parts",)

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.event_dim = 3
        self.parts = list(transforms)

    def get_weights(self) -> dict[str, np.ndarray]:
        """The parts' weights under ``parts.{i}.`` (the Pyro twin's ``ModuleList`` names)."""
        return {
            f"parts.{i}.{k}": v
            for i, t in enumerate(self.parts)
            for k, v in (t.get_weights() if hasattr(t, "get_weights") else {}).items()
        }

    def set_weights(self, weights: dict[str, np.ndarray]) -> _Nested:
        check_weights(self.get_weights(), weights)
        parts = []
        for i, t in enumerate(self.parts):
            prefix = f"parts.{i}."
            mine = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
            parts.append(t.set_weights(mine) if hasattr(t, "set_weights") else t)
        return self._replace(parts=parts)

    def call_and_ladj(self, x: jax.Array, inverse: bool = False) -> tuple[jax.Array, jax.Array]:
        """``(y, log|det dy/dx|)`` of the forward map at ``x``; with ``inverse``, the inverse
        map's value at ``x`` and the forward map's log-determinant there (batch-shaped)."""
        return self._apply(x, _inverse_chain if inverse else _forward_chain)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._apply(x, _forward_chain)[0]

    def call_with_intermediates(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._apply(x, _forward_chain)

    def _inverse(self, y: jax.Array) -> jax.Array:
        return self._apply(y, _inverse_chain)[0]

    def log_abs_det_jacobian(self, x: jax.Array, y: jax.Array, intermediates=None) -> jax.Array:
        if intermediates is not None:
            return intermediates
        return self._apply(y, _inverse_chain)[1]


class Squeezed(_Nested):
    """``transforms`` at half resolution: ``unsqueeze(f(squeeze(x)))`` for ``f`` their
    composition, so the event keeps its shape ``(C, H, W)`` (a scale of Dinh et al. 2016's
    multi-scale architecture). ``log|det|`` is ``f``'s (the squeezes are permutations).

    Args:
        transforms: Transforms on ``(4C, H/2, W/2)`` events, in noise-to-data order.
    """

    def _apply(self, x: jax.Array, chain) -> tuple[jax.Array, jax.Array]:
        y, ladj = chain(self.parts, squeeze(x))
        return unsqueeze(y), ladj

    def initialize(self, y: jax.Array) -> Squeezed:
        """A copy with the ActNorms inside initialised from data (see :func:`initialize_flow`)."""
        return self._replace(parts=initialize_flow(self.parts, squeeze(y)))


class FactorOut(_Nested):
    """``transforms`` on the first ``keep`` channels; the other channels are factored out
    (Dinh et al. 2016, section 3.6): passed unchanged to the base distribution.

    Args:
        transforms: Transforms on ``(keep, H, W)`` events, in noise-to-data order.
        keep: Channels that go on to ``transforms``, at least 1.

    Raises:
        ConfigError: ``keep < 1``.
    """

    _static = ("event_dim", "keep")

    def __init__(self, transforms: Sequence[Transform], keep: int) -> None:
        super().__init__(transforms)
        if int(keep) < 1:
            raise ConfigError(f"FactorOut keeps at least one channel, got keep={keep!r}")
        self.keep = int(keep)

    def _apply(self, x: jax.Array, chain) -> tuple[jax.Array, jax.Array]:
        if jnp.ndim(x) < 3 or jnp.shape(x)[-3] <= self.keep:
            raise DataError(
                f"FactorOut(keep={self.keep}) needs more than {self.keep} channels, got shape "
                f"{tuple(jnp.shape(x))}"
            )
        y, ladj = chain(self.parts, x[..., : self.keep, :, :])
        return jnp.concatenate([y, x[..., self.keep :, :, :]], axis=-3), ladj

    def initialize(self, y: jax.Array) -> FactorOut:
        """A copy with the ActNorms inside initialised from data (see :func:`initialize_flow`)."""
        return self._replace(parts=initialize_flow(self.parts, y[..., : self.keep, :, :]))


def initialize_flow(transforms: Sequence[Transform], y: jax.Array) -> list[Transform]:
    """Glow's data-dependent initialisation of every :class:`ActNorm` in a flow.

    Runs the batch ``y`` from the data side through ``transforms`` (noise-to-data order, as
    given to ``TransformedDistribution``) in reverse, replacing each transform with an
    ``initialize`` method by its initialised copy on the values that reach it, so every
    ActNorm's output has zero mean and unit variance per channel on this batch.

    Args:
        transforms: The flow's transforms.
        y: A batch of data ``(N, *event_shape)``.

    Returns:
        The transforms, initialised (new objects where initialised, the others as given).
        Traceable: ``jax.jit(initialize_flow)(transforms, y)`` runs it compiled.
    """
    out = list(transforms)
    y = jax.lax.stop_gradient(jnp.asarray(y))
    for i in reversed(range(len(out))):
        if hasattr(out[i], "initialize"):
            out[i] = out[i].initialize(y)
        y = out[i].inv(y)
    return out


def from_plan(
    plan: Sequence[Layer],
    *,
    hidden: int = 64,
    blocks: int = 1,
    log_scale_bound: float = 3.0,
    conditioner: str = "resnet",
) -> list[Transform]:
    """The transforms of a plan (:func:`ppgen.models.image_flows.realnvp_plan`,
    ``glow_plan``), in its noise-to-data order; couplings are affine (:class:`Affine`,
    ``log_scale_bound``) on a ``conditioner`` net of ``hidden`` channels: ``"resnet"`` (the
    default), :class:`ConvNet` with ``blocks`` residual blocks, or ``"glow"``,
    :class:`GlowNet` (``blocks`` unused). :func:`glow` passes ``"glow"``.

    Raises:
        ConfigError: A bad width, number of blocks, bound or conditioner.
    """
    conditioner = conditioner_name(conditioner)
    nested = {
        "hidden": hidden,
        "blocks": blocks,
        "log_scale_bound": log_scale_bound,
        "conditioner": conditioner,
    }
    out: list[Transform] = []
    for layer in plan:
        c = layer.shape[0]
        if layer.kind == "coupling":
            affine = Affine(log_scale_bound)
            net = conditioner_net(
                conditioner, c, c * affine.num_params, hidden, blocks, seed=layer.seed
            )
            out.append(Coupling(layer.mask, net, affine))
        elif layer.kind == "actnorm":
            out.append(ActNorm(c))
        elif layer.kind == "conv1x1":
            out.append(Invertible1x1Conv(c, seed=layer.seed))
        elif layer.kind == "squeezed":
            out.append(Squeezed(from_plan(layer.parts, **nested)))
        elif layer.kind == "factor_out":
            out.append(FactorOut(from_plan(layer.parts, **nested), layer.keep))
        else:
            raise ConfigError(f"unknown image flow layer {layer.kind!r}")
    return out


def multiscale_realnvp(
    event_shape: Sequence[int],
    *,
    scales: int = 2,
    steps: int = 3,
    hidden: int = 64,
    blocks: int | None = None,
    log_scale_bound: float = 3.0,
    seed: int = 0,
    conditioner: str = "resnet",
) -> list[Transform]:
    """RealNVP's multi-scale flow for images ``(C, H, W)`` (Dinh et al. 2016), as transforms
    in noise-to-data order for ``TransformedDistribution(Normal over (C, H, W), ...)``.

    At each of ``scales`` scales (data to noise): ``steps`` checkerboard affine couplings,
    squeeze, ``steps`` channel-wise affine couplings, factor out half the channels; then
    ``steps + 1`` checkerboard couplings. Conditioners are RealNVP's :class:`ConvNet`
    residual nets (``hidden`` channels, ``blocks``, default 2) or, with
    ``conditioner="glow"``, :class:`GlowNet`; zero at the output, so the flow starts as the
    identity. MNIST ``(1, 28, 28)`` takes at most two scales (28 -> 14 -> 7).

    Raises:
        ConfigError: Not ``(C, H, W)``, ``scales < 0``, ``steps < 1``, a height or width not
            a multiple of ``2**scales``, a bad network size, an unknown conditioner, or
            ``blocks`` with ``conditioner="glow"``.
    """
    blocks = check_conditioner(conditioner, blocks, default=2)
    plan = realnvp_plan(event_shape, scales=scales, steps=steps, seed=seed)
    return from_plan(
        plan,
        hidden=hidden,
        blocks=blocks,
        log_scale_bound=log_scale_bound,
        conditioner=conditioner,
    )


def glow(
    event_shape: Sequence[int],
    *,
    scales: int = 2,
    steps: int = 4,
    hidden: int = 64,
    blocks: int | None = None,
    log_scale_bound: float = 3.0,
    seed: int = 0,
    conditioner: str = "glow",
) -> list[Transform]:
    """A small Glow for images ``(C, H, W)`` (Kingma & Dhariwal 2018), as transforms in
    noise-to-data order for ``TransformedDistribution(Normal over (C, H, W), ...)``.

    At each of ``scales`` levels (data to noise): squeeze, ``steps`` steps of ActNorm ->
    invertible 1x1 convolution -> affine coupling (channel split, conditioner zero at the
    output), and factor out half the channels but at the last level. The conditioners are
    Glow's :class:`GlowNet` (``hidden`` channels) or, with ``conditioner="resnet"``,
    RealNVP's :class:`ConvNet` (``blocks`` residual blocks, default 1; what ppgen's Glow
    used before 2026-12-03). Call :func:`initialize_flow` with a batch of data for ActNorm's
    data-dependent initialisation. MNIST ``(1, 28, 28)`` takes at most two levels.

    Raises:
        ConfigError: Not ``(C, H, W)``, ``scales < 1``, ``steps < 1``, a height or width not
            a multiple of ``2**scales``, a bad network size, an unknown conditioner, or
            ``blocks`` with ``conditioner="glow"``.
    """
    blocks = check_conditioner(conditioner, blocks, default=1)
    plan = glow_plan(event_shape, scales=scales, steps=steps, seed=seed)
    return from_plan(
        plan,
        hidden=hidden,
        blocks=blocks,
        log_scale_bound=log_scale_bound,
        conditioner=conditioner,
    )
