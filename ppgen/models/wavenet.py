"""WaveNet's plan, written once in numpy for both backends: sizes, dilations, receptive field,
seeded initial weights (torch names and layouts) and the one-line checks of its inputs.

van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio". The networks are
``ppgen.models.pyro.wavenet.WaveNet`` and ``ppgen.models.numpyro.wavenet.WaveNet``; both read
this plan, so the same arguments build the same architecture with the same weights.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppgen.errors import ConfigError, DataError

__all__ = [
    "WaveNetPlan",
    "check_codes",
    "naive_window",
    "sample_shapes",
    "split_context",
    "wavenet_initial_weights",
    "wavenet_plan",
]


@dataclass(frozen=True)
class WaveNetPlan:
    """A WaveNet's static sizes.

    Attributes:
        channels: Quantisation levels of the input codes (256 for 8-bit mu-law).
        residual_channels: Width ``R`` of the residual stream.
        skip_channels: Width ``S`` of the skip connections.
        num_params: Outputs per time step (the head's ``num_params``; ``channels`` logits
            for a ``Categorical(channels)`` head).
        dilations: One per dilated layer, ``1, 2, ..., 2**(layers - 1)`` repeated ``stacks``
            times.
        kernel_size: Taps of every dilated convolution.
        global_dim: Width of the global conditioning vector (0: none).
        local_dim: Features per time step of the local conditioning (0: none).
    """

    channels: int
    residual_channels: int
    skip_channels: int
    num_params: int
    dilations: tuple[int, ...]
    kernel_size: int
    global_dim: int
    local_dim: int

    @property
    def receptive_field(self) -> int:
        """How many past samples the output at ``t`` sees: ``x[t - rf : t]``.

        ``1 + (kernel_size - 1) * sum(dilations)``: the input layer is a 1x1 convolution on
        the codes shifted by one step (it sees ``x[t - 1]``), each dilated layer reaches
        ``(kernel_size - 1) * dilation`` steps further back. 1024 for 10 layers of kernel 2.
        """
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def queue_sizes(self) -> tuple[int, ...]:
        """Past inputs each dilated layer keeps when sampling with the cache (Paine et al.
        2016): ``(kernel_size - 1) * dilation``."""
        return tuple((self.kernel_size - 1) * d for d in self.dilations)

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight's torch name and shape (``Conv1d``: ``(out, in, k)``; ``Linear``:
        ``(out, in)``), in registration order."""
        q, r, s, k = self.channels, self.residual_channels, self.skip_channels, self.kernel_size
        shapes: dict[str, tuple[int, ...]] = {"input.weight": (r, q, 1), "input.bias": (r,)}
        last = len(self.dilations) - 1
        for i in range(len(self.dilations)):
            p = f"layers.{i}."
            shapes[p + "dilated.weight"] = (2 * r, r, k)
            shapes[p + "dilated.bias"] = (2 * r,)
            if self.global_dim:
                shapes[p + "global_cond.weight"] = (2 * r, self.global_dim)
            if self.local_dim:
                shapes[p + "local_cond.weight"] = (2 * r, self.local_dim, 1)
            if i < last:  # the last layer's residual output would feed nothing
                shapes[p + "residual.weight"] = (r, r, 1)
                shapes[p + "residual.bias"] = (r,)
            shapes[p + "skip.weight"] = (s, r, 1)
            shapes[p + "skip.bias"] = (s,)
        shapes["output.0.weight"] = (s, s, 1)
        shapes["output.0.bias"] = (s,)
        shapes["output.1.weight"] = (self.num_params, s, 1)
        shapes["output.1.bias"] = (self.num_params,)
        return shapes


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"WaveNet's {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def wavenet_plan(
    channels: int,
    residual_channels: int,
    skip_channels: int,
    layers: int,
    stacks: int,
    kernel_size: int,
    global_dim: int,
    local_dim: int,
    num_params: int | None,
) -> WaveNetPlan:
    """Check a WaveNet's arguments (the networks' constructor arguments, documented there)
    and plan it.

    Returns:
        The plan; ``num_params=None`` means ``channels`` (a ``Categorical`` head).

    Raises:
        ConfigError: A size that is not a positive integer (``global_dim``/``local_dim``:
            not an integer >= 0), fewer than 2 channels, or a kernel of size 1 (it would
            not see the past).
    """
    return WaveNetPlan(
        channels=_positive("channels", channels, 2),
        residual_channels=_positive("residual_channels", residual_channels),
        skip_channels=_positive("skip_channels", skip_channels),
        num_params=_positive("num_params", channels if num_params is None else num_params),
        dilations=tuple(
            2**i
            for _ in range(_positive("stacks", stacks))
            for i in range(_positive("layers", layers))
        ),
        kernel_size=_positive("kernel_size", kernel_size, 2),
        global_dim=_positive("global_dim", global_dim, 0),
        local_dim=_positive("local_dim", local_dim, 0),
    )


def wavenet_initial_weights(plan: WaveNetPlan, seed: int) -> dict[str, np.ndarray]:
    """Initial weights, the same on both backends: each drawn as torch's ``Conv1d`` and
    ``Linear`` draw theirs (uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, ``fan_in =
    in * k``) by numpy's generator seeded ``seed``, in :meth:`WaveNetPlan.weight_shapes`'s
    order; a bias uses its weight's fan-in.

    Returns:
        ``{name: float64 array}`` with the shapes of :meth:`WaveNetPlan.weight_shapes`.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    fan_in = 1
    for name, shape in plan.weight_shapes().items():
        if name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        weights[name] = rng.uniform(-bound, bound, shape)
    return weights


def split_context(plan: WaveNetPlan, context: Any, length: int | None) -> tuple[Any, Any]:
    """Check a WaveNet's ``context`` by shape; return ``(global, local)`` (each or ``None``).

    ``context`` is ``None`` for an unconditional WaveNet, the global vector ``(*batch,
    global_dim)`` when only ``global_dim > 0``, the local features ``(*batch, T, local_dim)``
    when only ``local_dim > 0``, and the pair ``(global, local)`` when both. Any array type
    (shapes are read with ``np.shape``).

    Args:
        plan: The network's plan.
        context: As above.
        length: The sequence length ``T`` the local features must have (``None``: any).

    Raises:
        ConfigError: Conditioning given to a WaveNet built without it, or missing.
        DataError: A wrong feature width, or local features whose length is not ``T``.
    """
    want = ("global", "local") if plan.global_dim and plan.local_dim else None
    if not plan.global_dim and not plan.local_dim:
        if context is not None:
            raise ConfigError(
                "this WaveNet was built with global_dim=0 and local_dim=0; it takes no context"
            )
        return None, None
    if context is None:
        raise ConfigError(
            f"this WaveNet was built with global_dim={plan.global_dim}, "
            f"local_dim={plan.local_dim}; pass its context"
        )
    if want:
        if not isinstance(context, tuple | list) or len(context) != 2:
            raise ConfigError(
                "this WaveNet has global and local conditioning: pass context=(global "
                "(*batch, global_dim), local (*batch, T, local_dim))"
            )
        glob, local = context
    elif plan.global_dim:
        glob, local = context, None
    else:
        glob, local = None, context
    if glob is not None:
        shape = tuple(np.shape(glob))
        if not shape or shape[-1] != plan.global_dim:
            raise DataError(
                f"WaveNet's global conditioning must be (*batch, {plan.global_dim}), "
                f"got shape {shape}"
            )
    if local is not None:
        shape = tuple(np.shape(local))
        if len(shape) < 2 or shape[-1] != plan.local_dim:
            raise DataError(
                f"WaveNet's local conditioning must be (*batch, T, {plan.local_dim}), "
                f"got shape {shape}"
            )
        if length is not None and shape[-2] != length:
            raise DataError(
                f"WaveNet's local conditioning has {shape[-2]} time steps, the sequence has "
                f"{length}; give one feature vector per sample"
            )
    return glob, local


def check_codes(x: np.ndarray, channels: int) -> None:
    """Raise :class:`DataError` unless ``x`` holds integer codes ``0..channels - 1``.

    Args:
        x: Concrete values (a numpy array), integer or integral floats.
        channels: The number of quantisation levels.
    """
    x = np.asarray(x)
    if x.ndim < 1:
        raise DataError(f"WaveNet reads sequences (*batch, T) of codes, got shape {x.shape}")
    if x.size == 0:
        return
    if x.dtype.kind not in "iub" and not np.all(np.floor(x) == x):
        raise DataError("WaveNet's inputs must be integer codes (mu-law levels), got fractions")
    lo, hi = x.min(), x.max()
    if lo < 0 or hi >= channels:
        raise DataError(
            f"WaveNet's codes must lie in 0..{channels - 1}, got values in {lo:g}..{hi:g}; "
            "mu-law encode the audio with as many levels as the model's channels"
        )


def sample_shapes(
    noise_shape: tuple[int, ...], head_noise_shape: tuple[int, ...], prefix_shape: Any
) -> tuple[tuple[int, ...], int, int]:
    """The batch shape, length ``T`` and prefix length ``P`` of a WaveNet draw.

    Args:
        noise_shape: The noise's shape ``(*batch, T, *head_noise_shape)``.
        head_noise_shape: The head's per-sample noise shape.
        prefix_shape: The prefix's shape ``(*batch, P)``, or ``None``.

    Raises:
        DataError: Noise without a time axis, or a prefix longer than ``T``.
    """
    noise_shape, head_noise_shape = tuple(noise_shape), tuple(head_noise_shape)
    k = len(head_noise_shape)
    if len(noise_shape) < k + 1 or noise_shape[len(noise_shape) - k :] != head_noise_shape:
        raise DataError(
            f"WaveNet's sampling noise must be (*batch, T, *{head_noise_shape}) as the head "
            f"draws it, got shape {noise_shape}"
        )
    batch, length = noise_shape[: -k - 1], noise_shape[len(noise_shape) - k - 1]
    if prefix_shape is None:
        return batch, length, 0
    prefix_shape = tuple(prefix_shape)
    if not prefix_shape or prefix_shape[-1] > length:
        raise DataError(
            f"the prefix (*batch, P) must be at most the {length} samples to draw, got shape "
            f"{prefix_shape}"
        )
    return batch, length, prefix_shape[-1]


def naive_window(plan: WaveNetPlan, length: int) -> int:
    """How many steps the naive sampler re-evaluates per draw: ``min(T, receptive_field + 1)``.

    The output at ``t`` depends on ``x[t - rf : t]`` only, so the teacher-forced pass over
    the window ``x[t - rf : t + 1]`` (clipped to the sequence; the pass shifts its input by
    one step) gives it exactly, as Paine et al.'s naive baseline recomputes the whole
    receptive field per sample.
    """
    return min(int(length), plan.receptive_field + 1)


def context_batch_shape(plan: WaveNetPlan, context: Any) -> tuple[int, ...]:
    """The batch shape a WaveNet ``context`` (as :func:`split_context` takes it) stands for:
    the global vector's leading axes, or the local features' before ``(T, local_dim)``.

    Raises:
        ConfigError, DataError: As :func:`split_context`.
    """
    glob, local = split_context(plan, context, None)
    if glob is not None:
        return tuple(np.shape(glob)[:-1])
    if local is not None:
        return tuple(np.shape(local)[:-2])
    return ()
