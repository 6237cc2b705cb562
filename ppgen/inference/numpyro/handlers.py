"""Small effect handlers the objectives are built from: latent scaling and guide replay
(mirrors :mod:`ppgen.inference.pyro.handlers`).

Nothing here knows about ppgen's models; everything works on any NumPyro model/guide pair.
Each handler is a ``Messenger`` class named in NumPyro's idiom (lower case, like
``handlers.scale``) with a function that applies it, as the Pyro twin's are.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import jax
from numpyro.primitives import Messenger

__all__ = ["guide_replay", "latent_scale", "replay", "scale_latents"]


class latent_scale(Messenger):  # lower-case, like every numpyro handler
    """Multiply the log-density scale of every latent sample site by ``scale``.

    ``handlers.scale`` restricted to latent sites: around a model it weights the prior terms
    ``log p(z)`` and leaves the likelihood ``log p(x | z)`` alone. Unlike ``handlers.scale``
    it accepts ``scale = 0`` and traced values (a schedule inside ``jit``).

    Args:
        fn: The model or guide to wrap.
        scale: The weight, ``>= 0``: a float or a traced scalar.
        guide: Every sample site of a guide is a factor of ``q(z | x)``, so with
            ``guide=True`` all are scaled, also those conditioned on given values.
        exclude: Names of sites left unscaled (e.g. a label summed out by enumeration).
    """

    def __init__(
        self,
        fn: Callable | None = None,
        scale: float | jax.Array = 1.0,
        guide: bool = False,
        exclude: Collection[str] = (),
    ) -> None:
        self.scale, self.guide, self.exclude = scale, guide, frozenset(exclude)
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["name"] in self.exclude:
            return
        if self.guide or not msg["is_observed"]:
            msg["scale"] = self.scale if msg.get("scale") is None else self.scale * msg["scale"]


class guide_replay(Messenger):  # lower-case, like every numpyro handler
    """Give the model's unobserved sample sites (and plates) the values the guide trace holds.

    ``handlers.replay``, except that a guide site conditioned on a value
    (``handlers.condition(guide, data=...)``) is replayed too, where ``handlers.replay``
    raises: a conditioned guide is how a caller fixes the latent draws.

    Args:
        fn: The model to wrap.
        trace: The guide's trace.
    """

    def __init__(self, fn: Callable | None = None, trace: dict | None = None) -> None:
        self.trace = {} if trace is None else trace
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "control_flow":  # inside scan/cond: NumPyro's own replay
            msg["kwargs"]["substitute_stack"].append(("replay", self.trace))
            return
        site = self.trace.get(msg.get("name"))
        if site is None or site["type"] != msg["type"]:
            return
        if msg["type"] == "plate":  # the same subsample indices as the guide drew
            msg["value"] = site["value"]
        elif msg["type"] == "sample" and not msg["is_observed"]:
            msg["value"] = site["value"]
            msg["infer"] = site["infer"].copy()


def replay(model: Callable, trace: dict) -> Callable:
    """``model`` with its latent sites taking the values of the guide's ``trace``.

    Args:
        model: A NumPyro model.
        trace: A trace of its guide (conditioned guide sites included).

    Returns:
        The wrapped model (:class:`guide_replay`).
    """
    return guide_replay(model, trace)


def scale_latents(
    model: Callable, guide: Callable, scale: float | jax.Array, exclude: Collection[str] = ()
) -> tuple[Callable, Callable]:
    """Weight every latent term of ``log p(x, z) - log q(z | x)`` by ``scale``, which may be
    traced (an annealing schedule inside ``jit`` never recompiles).

    The model's unobserved sites and every sample site of the guide are scaled, the
    likelihood ``log p(x | z)`` is not: the beta-VAE / KL-annealing objective
    ``log p(x | z) + beta (log p(z) - log q(z | x))`` (Higgins et al., 2017; Bowman et al.,
    2016) when wrapped around an ELBO's pair.

    Args:
        model: A NumPyro model.
        guide: Its guide.
        scale: The weight ``beta >= 0``, a float or a traced scalar (0 is allowed).
        exclude: Names of sites left unscaled (e.g. a label summed out by enumeration).

    Returns:
        ``(model, guide)``, each wrapped in a :class:`latent_scale`.
    """
    return (
        latent_scale(model, scale, exclude=exclude),
        latent_scale(guide, scale, guide=True, exclude=exclude),
    )
