"""Image flows on Pyro: Glow's pieces, RealNVP's preprocessing and multi-scale architecture.

Every transform here is a :class:`pyro.distributions.torch_transform.TransformModule` on
events ``(..., C, H, W)`` (``ActNorm``, ``Dequantize`` and ``Logit`` also on vectors,
``event_dim=1``), so a user writes an image flow the way Pyro spells any flow::

    base = dist.Normal(torch.zeros(1, 28, 28), 1.0).to_event(3)
    flow = dist.TransformedDistribution(base, [*glow((1, 28, 28)), Logit(0.05).inv,
                                                Dequantize().inv])
    flow.log_prob(Dequantize().add_noise(x))  # x: 8-bit pixel values, log p in 8-bit space

Transforms map noise to data (forward = sampling), as in ``TransformedDistribution``;
``Dequantize`` and ``Logit`` are written in the data-to-noise direction of the papers, hence
their ``.inv``. Multi-scale (Dinh et al. 2016, section 3.6) keeps every event the shape of the
data: :class:`Squeezed` runs its transforms at half resolution and puts the pixels back,
:class:`FactorOut` runs its transforms on the first channels and passes the others (the
factored-out half) straight to the Normal base, so the base is one ``Normal`` over
``(C, H, W)`` whatever the number of scales. The mirror of ``ppgen.models.numpyro.image_flows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyro.distributions.constraints as constraints
import torch
import torch.nn.functional as F
from pyro.distributions.torch_transform import TransformModule
from torch import nn

from ppgen.errors import ConfigError, DataError
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
from ppgen.models.pyro.coupling import Affine, Coupling, FusedTransform
from ppgen.models.pyro.params import ModuleWeights

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


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.get_default_dtype())


def _check_event_dim(event_dim: int) -> int:
    if event_dim not in (1, 3):
        raise ConfigError(f"event_dim must be 1 (vectors) or 3 (images), got {event_dim!r}")
    return int(event_dim)


class ImageTransform(ModuleWeights, TransformModule):
    """Base of this module's transforms: bijective, ``event_dim``-dimensional real events,
    numpy weights under ``named_parameters()``'s names (``get_weights``/``set_weights``)."""

    bijective = True

    def __init__(self, event_dim: int = 3) -> None:
        super().__init__(cache_size=0)  # nothing cached: the module deep-copies after a call
        self._event_dim = event_dim

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self._event_dim)

    @property
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.real, self._event_dim)

    def _batch(self, x: torch.Tensor, value: torch.Tensor | float) -> torch.Tensor:
        """``value`` broadcast to the batch shape of ``x``."""
        return torch.as_tensor(value, dtype=x.dtype).expand(x.shape[: x.dim() - self._event_dim])


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

    def __init__(self, num_features: int, event_dim: int = 3) -> None:
        super().__init__(_check_event_dim(event_dim))
        if int(num_features) < 1:
            raise ConfigError(f"num_features must be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.loc = nn.Parameter(_tensor(np.zeros(self.num_features)))
        self.log_scale = nn.Parameter(_tensor(np.zeros(self.num_features)))

    def _view(self, p: torch.Tensor) -> torch.Tensor:
        return p[:, None, None] if self._event_dim == 3 else p

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < self._event_dim or x.shape[-self._event_dim] != self.num_features:
            kind = "(..., C, H, W)" if self._event_dim == 3 else "(..., D)"
            raise DataError(
                f"ActNorm({self.num_features}) takes {kind} with {self.num_features} "
                f"{'channels' if self._event_dim == 3 else 'features'}, got shape "
                f"{tuple(x.shape)}"
            )

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x * self._view(self.log_scale).exp() + self._view(self.loc)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y)
        return (y - self._view(self.loc)) * (-self._view(self.log_scale)).exp()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pixels = math.prod(x.shape[-2:]) if self._event_dim == 3 else 1
        return self._batch(x, pixels * self.log_scale.sum())

    def initialize(self, y: torch.Tensor) -> ActNorm:
        """Glow's data-dependent initialisation, in place: ``loc``, ``log_scale`` set so that
        the inverse (data-to-noise direction) maps the batch ``y`` to zero mean and unit
        variance per channel (feature). Returns ``self``.

        Args:
            y: A batch on this transform's data side, ``(N, ..., C, H, W)`` or ``(N, ..., D)``.
        """
        self._check(y)
        with torch.no_grad():
            moved = y.movedim(-self._event_dim, -1).reshape(-1, self.num_features)
            self.loc.copy_(moved.mean(0))
            self.log_scale.copy_(torch.log(moved.std(0, unbiased=False) + 1e-6))
        return self


class Invertible1x1Conv(ImageTransform):
    """Glow's invertible 1x1 convolution, LU-parametrised (Kingma & Dhariwal 2018, 3.2):
    ``y[c] = sum_k W[c, k] x[k]`` at every pixel, ``W = P L (U + diag(sign_s * exp(log_s)))``
    with ``P`` a fixed permutation, ``L`` unit lower and ``U`` strictly upper triangular.

    ``log|det| = H W sum(log_s)``. Pyro's ``GeneralizedChannelPermute`` keeps the diagonal of
    ``U`` unconstrained, so training can cross a singular ``W``; Glow's ``exp`` keeps it
    invertible, hence this class. Starts as a random rotation drawn from ``seed``.

    Args:
        channels: ``C``.
        seed: Seed of the initial rotation (numpy; the same on both backends).

    Raises:
        ConfigError: ``channels < 1``.
    """

    def __init__(self, channels: int, seed: int = 0) -> None:
        super().__init__(3)
        w = lu_weights(channels, seed)
        self.channels = int(channels)
        self.register_buffer("permutation", _tensor(w["permutation"]))
        self.register_buffer("sign_s", _tensor(w["sign_s"]))
        self.lower = nn.Parameter(_tensor(w["lower"]))
        self.upper = nn.Parameter(_tensor(w["upper"]))
        self.log_s = nn.Parameter(_tensor(w["log_s"]))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.channels, dtype=self.lower.dtype)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign_s * self.log_s.exp())
        return lower, upper

    def weight(self) -> torch.Tensor:
        """``W``, ``(C, C)``: output channel by input channel (``Conv2d``'s ``(out, in)``)."""
        lower, upper = self._factors()
        return self.permutation @ lower @ upper

    def inverse_weight(self) -> torch.Tensor:
        """``W^{-1} = U^{-1} L^{-1} P^T`` by triangular solves, ``(C, C)``."""
        lower, upper = self._factors()
        eye = torch.eye(self.channels, dtype=lower.dtype)
        l_inv = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        u_inv = torch.linalg.solve_triangular(upper, eye, upper=True)
        return u_inv @ l_inv @ self.permutation.T

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 3 or x.shape[-3] != self.channels:
            raise DataError(
                f"Invertible1x1Conv({self.channels}) takes (..., C, H, W) with C = "
                f"{self.channels}, got shape {tuple(x.shape)}"
            )

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return torch.einsum("ck,...khw->...chw", self.weight(), x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        self._check(y)
        return torch.einsum("ck,...khw->...chw", self.inverse_weight(), y)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._batch(x, math.prod(x.shape[-2:]) * self.log_s.sum())


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """2x2 space-to-depth, ``(..., C, H, W) -> (..., 4C, H/2, W/2)``; output channel
    ``4c + 2i + j`` holds pixel ``(2h + i, 2w + j)`` of channel ``c`` (torch's
    ``pixel_unshuffle`` order, Dinh et al. 2016).

    Raises:
        DataError: Not an image, or an odd height or width.
    """
    c4, h2, w2 = squeeze_shape(x.shape[-3:])
    batch = x.shape[:-3]
    x = x.reshape(*batch, c4 // 4, h2, 2, w2, 2)
    n = len(batch)
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*batch, c4, h2, w2)


def unsqueeze(y: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`, ``(..., 4C, H, W) -> (..., C, 2H, 2W)``.

    Raises:
        DataError: Not an image, or channels not a multiple of 4.
    """
    if y.dim() < 3 or y.shape[-3] % 4:
        raise DataError(f"unsqueeze takes (..., 4C, H, W), got shape {tuple(y.shape)}")
    c4, h2, w2 = y.shape[-3:]
    batch = y.shape[:-3]
    n = len(batch)
    y = y.reshape(*batch, c4 // 4, 2, 2, h2, w2)
    y = y.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return y.reshape(*batch, c4 // 4, 2 * h2, 2 * w2)


class Squeeze(ImageTransform):
    """2x2 squeeze as a transform, ``(..., C, H, W) -> (..., 4C, H/2, W/2)`` (Dinh et al.
    2016, section 3.6): a permutation of the pixels, ``log|det| = 0``.

    Raises (on call):
        DataError: An odd height or width.
    """

    def __init__(self) -> None:
        super().__init__(3)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return squeeze(x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return unsqueeze(y)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self._batch(x, 0.0)

    def forward_shape(self, shape: Sequence[int]) -> torch.Size:
        return torch.Size((*shape[:-3], *squeeze_shape(shape[-3:])))

    def inverse_shape(self, shape: Sequence[int]) -> torch.Size:
        c4, h, w = shape[-3:]
        return torch.Size((*shape[:-3], c4 // 4, 2 * h, 2 * w))


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

    def __init__(self, event_dim: int = 3, levels: int = LEVELS) -> None:
        super().__init__(_check_event_dim(event_dim))
        self.levels = check_levels(levels)

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(
            constraints.interval(0.0, float(self.levels)), self._event_dim
        )

    @property
    def codomain(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self._event_dim)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.levels

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.levels

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = math.prod(x.shape[x.dim() - self._event_dim :])
        return self._batch(x, -size * math.log(self.levels))

    def add_noise(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``x + u``, ``u ~ U[0, 1)`` from torch's generator, in the default float dtype.

        Raises:
            DataError: ``x`` is not pixel values of the levels (integers ``0..255``).
        """
        check_8bit(x.detach().cpu().numpy() if torch.is_tensor(x) else x, self.levels)
        x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        return x + torch.rand_like(x)


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

    def __init__(self, alpha: float = 0.05, event_dim: int = 3) -> None:
        super().__init__(_check_event_dim(event_dim))
        if not 0.0 <= float(alpha) < 0.5:
            raise ConfigError(f"Logit alpha must be in [0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    @property
    def domain(self) -> constraints.Constraint:
        return constraints.independent(constraints.unit_interval, self._event_dim)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.alpha + (1 - 2 * self.alpha) * x)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        terms = math.log(1 - 2 * self.alpha) + F.softplus(y) + F.softplus(-y)
        return terms.flatten(y.dim() - self._event_dim).sum(-1)


class ConvNet(ModuleWeights, nn.Module):
    """Conditioner of image couplings: a small pre-activation ResNet (He et al. 2016; the
    RealNVP conditioner without batch normalisation) of 3x3 same-padded convolutions,
    ``conv -> [h + conv(relu(conv(relu(h))))] * blocks -> relu -> conv``, the last
    convolution zero-initialised so a coupling on it starts as the identity (Glow).

    Maps ``(..., in_channels, H, W) -> (..., out_channels, H, W)``. Weights ``convs.{i}.weight``
    ``(out, in, 3, 3)`` and ``convs.{i}.bias``, drawn by numpy from ``seed``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        hidden: Channels of the hidden layers.
        blocks: Residual blocks (0: two convolutions with one hidden layer between).
        seed: Seed of the initial weights.

    Raises:
        ConfigError: A size below 1 or a negative ``blocks``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 64,
        blocks: int = 1,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if int(blocks) < 0:
            raise ConfigError(f"blocks must be a non-negative integer, got {blocks!r}")
        self.blocks = int(blocks)
        sizes = [in_channels] + [hidden] * (1 + 2 * self.blocks) + [out_channels]
        self.convs = _convs(conv_weights(sizes, seed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to the last three axes of ``x`` (any leading batch shape)."""
        batch = x.shape[:-3]
        h = self.convs[0](x.reshape(-1, *x.shape[-3:]))
        for b in range(self.blocks):
            inner = self.convs[1 + 2 * b](F.relu(h))
            h = h + self.convs[2 + 2 * b](F.relu(inner))
        out = self.convs[-1](F.relu(h))
        return out.reshape(*batch, *out.shape[-3:])


def _convs(weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> nn.ModuleList:
    """Same-padded ``Conv2d`` layers holding the numpy ``(weight, bias)`` pairs."""
    convs = []
    for weight, bias in weights:
        conv = nn.utils.skip_init(
            nn.Conv2d, weight.shape[1], weight.shape[0], weight.shape[-1], padding="same"
        )
        with torch.no_grad():
            conv.weight.copy_(_tensor(weight))
            conv.bias.copy_(_tensor(bias))
        convs.append(conv)
    return nn.ModuleList(convs)


class GlowNet(ConvNet):
    """Conditioner of Glow's affine couplings (Kingma & Dhariwal 2018, section 3.3):
    ``conv3x3 -> relu -> conv1x1 -> relu -> conv3x3``, the last convolution zero-initialised
    so a coupling on it starts as the identity. Without the ActNorm between the layers and
    the learned output scale of the paper's code. Its 1x1 middle layer makes it about as
    cheap at ``hidden`` channels as :class:`ConvNet` at a third of them.

    Maps ``(..., in_channels, H, W) -> (..., out_channels, H, W)``. Weights
    ``convs.{0,1,2}.weight`` (kernels ``(out, in, 3, 3)``, ``(out, in, 1, 1)``,
    ``(out, in, 3, 3)``) and ``convs.{i}.bias``, drawn by numpy from ``seed``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        hidden: Channels of the two hidden layers.
        seed: Seed of the initial weights.

    Raises:
        ConfigError: A size below 1.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 512, *, seed: int = 0):
        nn.Module.__init__(self)
        self.blocks = 0
        sizes = [in_channels, hidden, hidden, out_channels]
        self.convs = _convs(conv_weights(sizes, seed, GLOW_KERNELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the network to the last three axes of ``x`` (any leading batch shape)."""
        batch = x.shape[:-3]
        h = F.relu(self.convs[0](x.reshape(-1, *x.shape[-3:])))
        out = self.convs[2](F.relu(self.convs[1](h)))
        return out.reshape(*batch, *out.shape[-3:])


def conditioner_net(
    conditioner: str, in_channels: int, out_channels: int, hidden: int, blocks: int, seed: int
) -> ConvNet:
    """The conditioner ``conditioner`` (``"resnet"``: :class:`ConvNet` with ``blocks``;
    ``"glow"``: :class:`GlowNet`) of one image coupling."""
    if conditioner == "glow":
        return GlowNet(in_channels, out_channels, hidden, seed=seed)
    return ConvNet(in_channels, out_channels, hidden, blocks, seed=seed)


def _forward_chain(parts: Sequence, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ladj = 0.0
    for t in parts:
        y = t(x)
        ladj = ladj + t.log_abs_det_jacobian(x, y)
        x = y
    return x, ladj


def _inverse_chain(parts: Sequence, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ladj = 0.0
    for t in reversed(parts):
        x = t.inv(y)
        ladj = ladj + t.log_abs_det_jacobian(x, y)
        y = x
    return y, ladj


class _Nested(FusedTransform):
    """A transform running ``transforms`` (noise-to-data order) on a part of the event.

    Torch evaluates eagerly and ``TransformedDistribution`` asks for ``inv(y)`` and then
    ``log_abs_det_jacobian(x, y)``: the log-det computed with the values is kept for that
    pair (:class:`FusedTransform`, as the couplings do) instead of running the parts
    again.
    """

    domain = constraints.independent(constraints.real, 3)
    codomain = constraints.independent(constraints.real, 3)

    def __init__(self, transforms: Sequence[TransformModule]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(transforms)

    def _transform(self, v: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(v, _inverse_chain if inverse else _forward_chain)


class Squeezed(_Nested):
    """``transforms`` at half resolution: ``unsqueeze(f(squeeze(x)))`` for ``f`` their
    composition, so the event keeps its shape ``(C, H, W)`` (a scale of Dinh et al. 2016's
    multi-scale architecture). ``log|det|`` is ``f``'s (the squeezes are permutations).

    Args:
        transforms: Transforms on ``(4C, H/2, W/2)`` events, in noise-to-data order.
    """

    def _run(self, x: torch.Tensor, chain) -> tuple[torch.Tensor, torch.Tensor]:
        y, ladj = chain(self.parts, squeeze(x))
        return unsqueeze(y), ladj

    def initialize(self, y: torch.Tensor) -> Squeezed:
        """Data-dependent initialisation of the ActNorms inside (see :func:`initialize_flow`)."""
        initialize_flow(self.parts, squeeze(y))
        return self


class FactorOut(_Nested):
    """``transforms`` on the first ``keep`` channels; the other channels are factored out
    (Dinh et al. 2016, section 3.6): passed unchanged to the base distribution.

    Args:
        transforms: Transforms on ``(keep, H, W)`` events, in noise-to-data order.
        keep: Channels that go on to ``transforms``, at least 1.

    Raises:
        ConfigError: ``keep < 1``.
    """

    def __init__(self, transforms: Sequence[TransformModule], keep: int) -> None:
        super().__init__(transforms)
        if int(keep) < 1:
            raise ConfigError(f"FactorOut keeps at least one channel, got keep={keep!r}")
        self.keep = int(keep)

    def _run(self, x: torch.Tensor, chain) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() < 3 or x.shape[-3] <= self.keep:
            raise DataError(
                f"FactorOut(keep={self.keep}) needs more than {self.keep} channels, got shape "
                f"{tuple(x.shape)}"
            )
        y, ladj = chain(self.parts, x[..., : self.keep, :, :])
        return torch.cat([y, x[..., self.keep :, :, :]], dim=-3), ladj

    def initialize(self, y: torch.Tensor) -> FactorOut:
        """Data-dependent initialisation of the ActNorms inside (see :func:`initialize_flow`)."""
        initialize_flow(self.parts, y[..., : self.keep, :, :])
        return self


def initialize_flow(transforms: Sequence, y: torch.Tensor) -> list:
    """Glow's data-dependent initialisation of every :class:`ActNorm` in a flow, in place.

    Runs the batch ``y`` from the data side through ``transforms`` (noise-to-data order, as
    given to ``TransformedDistribution``) in reverse, initialising each transform with an
    ``initialize`` method on the values that reach it, so every ActNorm's output has zero mean
    and unit variance per channel on this batch.

    Args:
        transforms: The flow's transforms.
        y: A batch of data ``(N, *event_shape)``.

    Returns:
        ``list(transforms)`` (the same, initialised objects).
    """
    transforms = list(transforms)
    with torch.no_grad():
        for t in reversed(transforms):
            if hasattr(t, "initialize"):
                t.initialize(y)
            y = t.inv(y)
    return transforms


def from_plan(
    plan: Sequence[Layer],
    *,
    hidden: int = 64,
    blocks: int = 1,
    log_scale_bound: float = 3.0,
    conditioner: str = "resnet",
) -> list[TransformModule]:
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
    out: list[TransformModule] = []
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
) -> list[TransformModule]:
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
) -> list[TransformModule]:
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
