"""Argument checks of the objectives and estimators, written once for both backends.

Each raises a one-line :class:`~ppgen.errors.ConfigError` that says what to pass instead,
so the same wrong argument is refused with the same words on Pyro and on NumPyro.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ppgen.errors import ConfigError

__all__ = [
    "check_count",
    "check_decay",
    "check_mcmc_counts",
    "check_noise_width",
    "check_non_negative",
    "check_num_particles",
    "check_seed",
    "datapoint_param_sizes",
    "support_message",
]

DATA = "data"  # the plate over datapoints, by ppgen convention


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``.

    Floats (``2.0``) and booleans are refused: a count given as either is a mistake
    somewhere upstream, better reported than rounded.

    Args:
        name: The argument's name, for the message.
        value: The value to check (``int`` or a numpy integer).
        minimum: The smallest allowed value (1: "positive", 0: "non-negative").

    Raises:
        ConfigError: ``value`` is not an integer, or is smaller than ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f">= {minimum}"
        raise ConfigError(f"{name} must be a {kind} integer, got {value!r}")
    return int(value)


def check_decay(decay: object) -> None:
    """Raise ConfigError unless ``decay`` (a moving average's, e.g. NVIL's baseline) is
    ``None`` or in ``[0, 1)``."""
    if decay is not None and not (isinstance(decay, (int, float)) and 0 <= decay < 1):
        raise ConfigError(f"decay must be None or in [0, 1), got {decay!r}")


def check_num_particles(num_particles: object) -> int:
    """``num_particles`` as an ``int``; :func:`check_count` with ``minimum = 1``.

    Raises:
        ConfigError: Not a positive integer (``0``, ``-1``, ``2.0`` and ``True`` are refused).
    """
    return check_count("num_particles", num_particles)


def check_non_negative(name: str, value: object, hint: str = "") -> float:
    """Return ``value`` as a ``float`` if it is a number ``>= 0`` (a weight such as ``beta``).

    Args:
        name: The argument's name, for the message.
        value: A Python or numpy number, or a 0-d array.
        hint: Said after ``>= 0`` in the message, e.g. ``" (or None for 0.1 N)"``.

    Raises:
        ConfigError: ``value`` is negative, NaN or not a number.
    """
    try:
        ok = float(value) >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{name} must be >= 0{hint}, got {value!r}")
    return float(value)


def check_noise_width(width: object) -> float:
    """Return ``width`` as a ``float`` if it is a finite number ``> 0`` (the width of
    uniform dequantisation noise, ``noise.UniformNoise``).

    Raises:
        ConfigError: ``width`` is not a positive finite number.
    """
    try:
        ok = math.isfinite(float(width)) and float(width) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"the noise width must be a positive number, got {width!r}")
    return float(width)


def check_seed(seed: object) -> int:
    """``seed`` as an ``int`` if it is an integer in ``[0, 2**32)`` (what both backends'
    generators take).

    Raises:
        ConfigError: Not an integer (booleans and floats included) or out of range.
    """
    if isinstance(seed, bool) or not (isinstance(seed, int | np.integer) and 0 <= seed < 2**32):
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def check_mcmc_counts(num_warmup: object, num_samples: object, num_chains: object) -> tuple:
    r"""``(num_warmup, num_samples, num_chains)`` of a NUTS run as ``int``\ s.

    Raises:
        ConfigError: A negative ``num_warmup``, or ``num_samples`` or ``num_chains`` not a
            positive integer.
    """
    return (
        check_count("num_warmup", num_warmup, minimum=0),
        check_count("num_samples", num_samples),
        check_count("num_chains", num_chains),
    )


def datapoint_param_sizes(sites: Iterable[dict]) -> set[int]:
    """Sizes of the ``"data"`` plate along which param sites are subsampled: the
    per-datapoint parameters of a non-amortized guide (``AutoNormal``: a param site inside
    the plate, declared with an ``event_dim``), from a trace's site messages (Pyro's or
    NumPyro's). Empty for an amortized pair.
    """
    sizes = set()
    for site in sites:
        if site["type"] != "param" or site["kwargs"].get("event_dim") is None:
            continue
        frame = next((f for f in site["cond_indep_stack"] if f.name == DATA), None)
        if frame is None:
            continue
        shape = np.shape(site["value"])
        sizes.add(int(shape[len(shape) - site["kwargs"]["event_dim"] + frame.dim]))
    return sizes


def support_message(
    name: str, family: str, support: str, value: np.ndarray, inside: np.ndarray, bad: np.ndarray
) -> str:
    """The one-line ``DataError`` text for observed values outside their likelihood's
    support (both backends' ``check_observed_support``).

    Args:
        name: The observed site.
        family: The likelihood's distribution class, e.g. ``"Bernoulli"``.
        support: Its support, as text.
        value: The observed array.
        inside: Per example (batch shape): whether it lies in the support.
        bad: Per element of ``value``: whether it lies outside the family's support.
    """
    where = np.argwhere(bad if bad.any() else ~inside)[0]
    index = tuple(int(i) for i in where)
    example = f" ({value[index]:g} at index {index})" if bad.any() else f" (at {index})"
    if family.startswith("Bernoulli"):
        fix = (
            "binarize the data (e.g. Trainer(..., transform=DynamicBinarization())) or use a "
            "likelihood for grey values"
        )
    else:
        fix = "transform the data into the support or use a likelihood that covers it"
    return (
        f"observed site {name!r}: {int((~inside).sum())} example(s) outside the support of "
        f"its {family} likelihood ({support}){example}; {fix}"
    )
