"""Settings of the element-wise maps of coupling and autoregressive flows, checked once in
numpy for both backends (``ppgen.models.{pyro,numpyro}.coupling``).

The rational-quadratic spline (Durkan et al. 2019) keeps every bin at least
``MIN_BIN_WIDTH`` wide and ``MIN_BIN_HEIGHT`` high (as fractions of ``2 B``) and every
interior knot's derivative at least ``MIN_DERIVATIVE``, the values of the paper's code.
An interior derivative is ``MIN_DERIVATIVE + softplus(raw + DERIVATIVE_SHIFT)``, the shift
chosen so that a zero ``raw`` gives derivative 1: with equal bins (zero width and height
parameters) the spline is then the identity, so a flow whose conditioners start at zero
starts as the identity (flowjax initialises its raw derivatives the same way).
"""

from __future__ import annotations

import math
import numbers

from ppgen.errors import ConfigError, DataError

__all__ = [
    "DERIVATIVE_SHIFT",
    "DIRECTIONS",
    "MIN_BIN_HEIGHT",
    "MIN_BIN_WIDTH",
    "MIN_DERIVATIVE",
    "check_autoregressive",
    "check_conditioner_output",
    "check_event_shape",
    "check_log_scale_bound",
    "check_spline",
]

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3
# softplus(DERIVATIVE_SHIFT) = 1 - MIN_DERIVATIVE: zero parameters give derivative 1.
DERIVATIVE_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))
# MAF: parameters from the data side (one-pass density); IAF: from the noise side.
DIRECTIONS = ("maf", "iaf")


def check_spline(bins: int, bound: float) -> tuple[int, float]:
    """Check a spline's number of bins ``K`` and half-width ``B``; return them typed.

    Raises:
        ConfigError: ``bins`` not an integer >= 1 (or so many that the minimum widths
            exceed the interval), or ``bound`` not a finite number > 0.
    """
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ConfigError(f"spline bins must be an integer >= 1, got {bins!r}")
    if bins * max(MIN_BIN_WIDTH, MIN_BIN_HEIGHT) >= 1:
        raise ConfigError(f"spline bins must be below {int(1 / MIN_BIN_WIDTH)}, got {bins}")
    if not _positive(bound):
        raise ConfigError(f"spline bound must be a finite number > 0, got {bound!r}")
    return int(bins), float(bound)


def check_log_scale_bound(bound: float) -> float:
    """Check the affine map's bound on ``|log scale|``; return it as a float.

    Raises:
        ConfigError: ``bound`` not a finite number > 0.
    """
    if not _positive(bound):
        raise ConfigError(f"log_scale_bound must be a finite number > 0, got {bound!r}")
    return float(bound)


def _positive(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def check_event_shape(shape: tuple[int, ...], event_shape: tuple[int, ...], name: str) -> None:
    """Raise :class:`DataError` unless an input of ``shape`` ends in ``event_shape``.

    Args:
        shape: The input's shape ``(..., *event_shape)``.
        event_shape: What the transform was built for, ``(D,)`` or ``(C, H, W)``.
        name: The transform's name, for the message.

    Raises:
        DataError: Too few dimensions or the trailing ones differ.
    """
    shape, event_shape = tuple(shape), tuple(event_shape)
    if len(shape) < len(event_shape) or shape[len(shape) - len(event_shape) :] != event_shape:
        raise DataError(
            f"{name} was built for events of shape {event_shape} (inputs (..., "
            f"{', '.join(map(str, event_shape))})), got an input of shape {shape}"
        )


def check_conditioner_output(got: object, want: object, entries: object, num_params: int) -> None:
    """Raise :class:`ConfigError` unless a conditioner's output shape ``got`` is ``want``
    (``num_params`` parameters for each of the transformed ``entries``).

    Raises:
        ConfigError: The shapes differ (a network built for another map or mask).
    """
    if got != want:
        raise ConfigError(
            f"the conditioner outputs {got} per example, but the element-wise map needs "
            f"{num_params} parameters for each of the {entries} transformed entries, {want}; "
            "build the conditioner's last layer with that many outputs"
        )


def check_autoregressive(direction: str, made_num_params: int, num_params: int) -> str:
    """Check an autoregressive layer's direction and that its MADE outputs ``num_params``
    parameters per input (those of the element-wise map); return the direction.

    Raises:
        ConfigError: A direction not in :data:`DIRECTIONS`, or the counts differ.
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"unknown direction {direction!r}; choose one of {DIRECTIONS}")
    if made_num_params != num_params:
        raise ConfigError(
            f"the MADE outputs {made_num_params} parameters per input, the element-wise map "
            f"needs {num_params}; build the MADE with num_params={num_params}"
        )
    return direction
