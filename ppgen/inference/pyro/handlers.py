"""Small effect handlers the objectives are built from: latent scaling and guide replay
(mirrors :mod:`ppgen.inference.numpyro.handlers`).

Nothing here knows about ppgen's models; everything works on any Pyro model/guide pair.
Each handler is a ``Messenger`` class named in Pyro's idiom (``...Messenger``) with a function
that applies it (``poutine.scale`` and ``ScaleMessenger`` are the pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample

__all__ = [
    "GuideReplayMessenger",
    "LatentScaleMessenger",
    "ParamSubstituteMessenger",
    "replay",
    "scale_latents",
]


class LatentScaleMessenger(Messenger):
    """Multiply the log-density scale of every latent sample site by ``scale``.

    ``poutine.scale`` restricted to latent sites (and allowing ``scale = 0``, where
    ``poutine.scale`` insists on ``> 0``): around a model it weights the prior terms
    ``log p(z)`` and leaves the likelihood ``log p(x | z)`` alone.

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


class GuideReplayMessenger(Messenger):
    """Give the model's unobserved sample sites the values the guide trace holds.

    ``poutine.replay`` for sample sites, except that a guide site conditioned on a value
    (``poutine.condition(guide, data=...)``) is replayed too, where ``poutine.replay``
    raises: a conditioned guide is how a caller fixes the latent draws.

    Args:
        trace: The guide's trace.
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


class ParamSubstituteMessenger(Messenger):
    """Give the param sites named in ``data`` (full site names) those values.

    ``poutine.substitute`` matches a ``pyro.module`` parameter by its short name
    (``"layers.0.weight"``, the same for every network); this matches
    ``"encoder$$$layers.0.weight"`` exactly. (Pyro only: NumPyro's ``handlers.substitute``
    already matches full names.)

    Args:
        data: Values by full param site name.
    """

    def __init__(self, data: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.data = data

    def _pyro_param(self, msg: Message) -> None:
        if msg["name"] in self.data:
            msg["value"] = self.data[msg["name"]]
            msg["done"] = True


def replay(model: Callable, trace: Trace) -> Callable:
    """``model`` with its latent sites taking the values of the guide's ``trace``.

    Args:
        model: A Pyro model.
        trace: A trace of its guide (conditioned guide sites included).

    Returns:
        The wrapped model (:class:`GuideReplayMessenger`).
    """
    return GuideReplayMessenger(trace)(model)


def scale_latents(
    model: Callable, guide: Callable, scale: float, exclude: Collection[str] = ()
) -> tuple[Callable, Callable]:
    """Weight every latent term of ``log p(x, z) - log q(z | x)`` by ``scale``, a number
    (``poutine.scale`` would refuse 0).

    The model's unobserved sites and every sample site of the guide are scaled, the
    likelihood ``log p(x | z)`` is not: the beta-VAE / KL-annealing objective
    ``log p(x | z) + beta (log p(z) - log q(z | x))`` (Higgins et al., 2017; Bowman et al.,
    2016) when wrapped around an ELBO's pair.

    Args:
        model: A Pyro model.
        guide: Its guide.
        scale: The weight ``beta >= 0`` (0 is allowed, unlike ``poutine.scale``).
        exclude: Names of sites left unscaled (e.g. a label summed out by enumeration).

    Returns:
        ``(model, guide)``, each wrapped in a :class:`LatentScaleMessenger`.
    """
    return (
        LatentScaleMessenger(scale, exclude=exclude)(model),
        LatentScaleMessenger(scale, guide=True, exclude=exclude)(guide),
    )
