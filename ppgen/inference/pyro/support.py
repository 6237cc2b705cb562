"""Observed data against their likelihood's support (mirrors
:mod:`ppgen.inference.numpyro.support`).

A value outside the support of its likelihood (grey pixels under a Bernoulli) has
log-density ``-inf``: a bound of ``-inf`` or ``NaN`` from a compiled evaluation, with no
word of why. The entry points that take data run :func:`check_observed_support` on a batch
(eagerly, once) and again when a result is not finite, so the user reads which site and
which value, in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyro import poutine

from ppgen.errors import DataError
from ppgen.inference.checks import support_message

__all__ = ["check_observed_support"]


def check_observed_support(model: Callable, args: tuple, kwargs: dict[str, Any]) -> None:
    """Raise :class:`DataError` when an observed site's value lies outside the support of
    its distribution (masked-out entries excepted).

    ``model`` runs once on ``args``/``kwargs`` (a batch), without gradients; its latents
    are drawn from the prior on a fork of torch's generator (the caller's stream is left
    as it was).

    Raises:
        DataError: Naming the site, its distribution, the support and the first value
            outside it, with the fix for the common case (binarize for a Bernoulli).
    """
    with torch.no_grad(), torch.random.fork_rng(devices=[]), poutine.block():
        trace = poutine.trace(model).get_trace(*args, **kwargs)
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or not site["is_observed"]:
            continue
        fn, value = site["fn"], site["value"]
        inside = fn.support.check(value).cpu().numpy().astype(bool)
        mask = site.get("mask")
        if mask is not None and not isinstance(mask, bool):
            inside = inside | ~np.broadcast_to(mask.cpu().numpy().astype(bool), inside.shape)
        if inside.all():
            continue
        raise DataError(_message(name, fn, value.detach().cpu().numpy(), inside))


def _message(name: str, fn: Any, value: np.ndarray, inside: np.ndarray) -> str:
    base = fn
    while hasattr(base, "base_dist"):  # Independent, Masked, ... down to the family
        base = base.base_dist
    bad = ~base.support.check(torch.as_tensor(value)).numpy().astype(bool)  # per element
    return support_message(name, type(base).__name__, str(base.support), value, inside, bad)
