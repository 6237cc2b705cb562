"""Effect handlers the objectives are built from: latent scaling and vectorised particles.

Nothing here knows about ppgen's models; everything works on any Pyro model/guide pair.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

__all__ = [
    "GuideReplayMessenger",
    "LatentScaleMessenger",
    "ParamSubstituteMessenger",
    "guess_max_plate_nesting",
    "is_latent",
    "replay",
    "scale_latents",
    "traces",
]

PARTICLES = "particles"


def is_latent(site: Message) -> bool:
    """An unobserved sample site that is not a plate's subsample draw."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


class LatentScaleMessenger(Messenger):
    """Multiply the log-density scale of every latent sample site by ``scale``.

    ``poutine.scale`` restricted to latent sites (and allowing ``scale = 0``, where
    ``poutine.scale`` insists on ``> 0``): around a model it weights the prior terms
    ``log p(z)`` and leaves the likelihood ``log p(x | z)`` alone (beta-VAE, KL annealing).

    Args:
        scale: The weight, ``>= 0``.
        guide: Every sample site of a guide is a factor of ``q(z | x)``, so with
            ``guide=True`` all are scaled, also those conditioned on given values.
        exclude: Names of sites left unscaled (e.g. a label summed out by enumeration).
    """

    def __init__(self, scale: float, guide: bool = False, exclude: Collection[str] = ()) -> None:
        super().__init__()
        self.scale, self.guide, self.exclude = scale, guide, frozenset(exclude)

    def _process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or site_is_subsample(msg) or msg["name"] in self.exclude:
            return
        if self.guide or not msg["is_observed"]:
            msg["scale"] = self.scale * msg["scale"]


class ParamSubstituteMessenger(Messenger):
    """Give the param sites named in ``data`` (full site names) those values.

    ``poutine.substitute`` matches a ``pyro.module`` parameter by its short name
    (``"layers.0.weight"``, the same for every network); this matches
    ``"encoder$$$layers.0.weight"`` exactly.
    """

    def __init__(self, data: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.data = data

    def _pyro_param(self, msg: Message) -> None:
        if msg["name"] in self.data:
            msg["value"] = self.data[msg["name"]]
            msg["done"] = True


class GuideReplayMessenger(Messenger):
    """Give the model's unobserved sample sites the values the guide trace holds.

    ``poutine.replay`` for sample sites, except that a guide site conditioned on a value
    (``poutine.condition(guide, data=...)``) is replayed too, where ``poutine.replay``
    raises: a conditioned guide is how a caller fixes the latent draws.
    """

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.trace = trace

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"]:
            return
        site = self.trace.nodes.get(msg["name"])
        if site is not None and site["type"] == "sample":
            msg["value"] = site["value"]
            msg["infer"] = site["infer"]
            msg["done"] = True


def replay(model: Callable, trace: Trace) -> Callable:
    """``model`` with its latent sites replayed from ``trace`` (:class:`GuideReplayMessenger`)."""
    return GuideReplayMessenger(trace)(model)


def scale_latents(
    model: Callable, guide: Callable, beta: float, exclude: Collection[str] = ()
) -> tuple[Callable, Callable]:
    """Weight every latent term of ``log p(x, z) - log q(z | x)`` by ``beta`` (sites named in
    ``exclude`` keep weight 1)."""
    return (
        LatentScaleMessenger(beta, exclude=exclude)(model),
        LatentScaleMessenger(beta, guide=True, exclude=exclude)(guide),
    )


def guess_max_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict) -> int:
    """Number of batch dims the pair's plates use, found by running it once (no grad).

    As ``pyro.infer.ELBO._guess_max_plate_nesting``: assumes a static plate structure.
    """
    with torch.no_grad(), poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
    dims = [
        frame.dim
        for trace in (model_trace, guide_trace)
        for site in trace.nodes.values()
        if site["type"] == "sample"
        for frame in site["cond_indep_stack"]
        if frame.vectorized
    ]
    return -min(dims, default=0)


def _in_particle_plate(fn: Callable, num_particles: int, dim: int) -> Callable:
    def vectorized(*args: Any, **kwargs: Any) -> Any:
        with pyro.plate(PARTICLES, num_particles, dim=dim):
            return fn(*args, **kwargs)

    return vectorized


def traces(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    num_particles: int = 1,
    max_plate_nesting: int | None = None,
) -> tuple[Trace, Trace, int | None]:
    """``z ~ q(z | x)`` traced, and the model traced at those ``z`` (``replay``).

    With ``num_particles > 1`` (or a given ``max_plate_nesting``) both run inside an outer
    ``pyro.plate("particles", num_particles)`` at ``dim = -(max_plate_nesting + 1)``, so every
    particle is drawn in one vectorised pass (as ``Trace_ELBO(vectorize_particles=True)``).

    Returns:
        ``(model_trace, guide_trace, particle_dim)``; ``particle_dim`` is ``None`` without
        the particle plate.
    """
    dim = None
    if num_particles > 1 or max_plate_nesting is not None:
        if max_plate_nesting is None:
            max_plate_nesting = guess_max_plate_nesting(model, guide, args, kwargs)
        dim = -(max_plate_nesting + 1)
        model = _in_particle_plate(model, num_particles, dim)
        guide = _in_particle_plate(guide, num_particles, dim)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs)
    return model_trace, guide_trace, dim
