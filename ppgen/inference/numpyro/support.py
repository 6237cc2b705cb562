"""Observed data against their likelihood's support (mirrors
:mod:`ppgen.inference.pyro.support`).

A value outside the support of its likelihood (grey pixels under a Bernoulli) has
log-density ``-inf``: a bound of ``-inf`` or ``NaN`` from a compiled evaluation, with no
word of why. The entry points that take data run :func:`check_observed_support` on a batch
(eagerly, once) and again when a result is not finite, so the user reads which site and
which value, in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from numpyro import handlers

from ppgen.errors import DataError
from ppgen.inference.checks import support_message

__all__ = ["check_observed_support"]


def check_observed_support(
    model: Callable, args: tuple, kwargs: dict[str, Any], *, rng_key: jax.Array | None = None
) -> None:
    """Raise :class:`DataError` when an observed site's value lies outside the support of
    its distribution (masked-out entries excepted).

    ``model`` runs once, eagerly, on ``args``/``kwargs`` (a batch); its latents are drawn
    from the prior, parameters are whatever the caller substitutes around it.

    Raises:
        DataError: Naming the site, its distribution, the support and the first value
            outside it, with the fix for the common case (binarize for a Bernoulli).
    """
    rng_key = jax.random.PRNGKey(0) if rng_key is None else rng_key
    with handlers.block():
        trace = handlers.trace(handlers.seed(model, rng_key)).get_trace(*args, **kwargs)
    for name, site in trace.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        fn, value = site["fn"], site["value"]
        inside = np.asarray(fn.support(value), dtype=bool)
        if site.get("mask") is not None:
            inside = inside | ~np.broadcast_to(np.asarray(site["mask"], dtype=bool), inside.shape)
        if inside.all():
            continue
        raise DataError(_message(name, fn, np.asarray(value), inside))


def _message(name: str, fn: Any, value: np.ndarray, inside: np.ndarray) -> str:
    base = fn
    while hasattr(base, "base_dist"):  # Independent, Masked, ... down to the family
        base = base.base_dist
    bad = ~np.asarray(base.support(value), dtype=bool)  # per element
    return support_message(name, type(base).__name__, str(base.support), value, inside, bad)
