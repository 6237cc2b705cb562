"""A small effect handler: scale the log-density of named latent sites (KL weighting)."""

from __future__ import annotations

from collections.abc import Callable, Collection

import jax
from numpyro.primitives import Messenger

__all__ = ["scale_latents"]


class scale_latents(Messenger):  # lower-case, like every numpyro handler
    """Multiply the log-density of the sample sites named in ``latents`` by ``scale``.

    This is ``numpyro.handlers.scale`` restricted to latent sites, so wrapping both model
    and guide weights ``log p(z) - log q(z | x)`` by ``beta`` and leaves ``log p(x | z)``
    alone: the beta-VAE / KL-annealing objective (Higgins et al., 2017; Bowman et al., 2016).
    Sites are chosen by name rather than by ``is_observed`` so that a guide conditioned on
    given latent values (``handlers.condition``) is scaled the same way. Unlike
    ``handlers.scale`` it accepts ``scale = 0`` and traced values (a schedule inside ``jit``).

    Args:
        fn: The model or guide to wrap.
        scale: Non-negative factor, a float or a traced scalar.
        latents: Names of the sites to scale.
    """

    def __init__(
        self,
        fn: Callable | None = None,
        scale: float | jax.Array = 1.0,
        latents: Collection[str] = (),
    ) -> None:
        self.scale = scale
        self.latents = frozenset(latents)
        super().__init__(fn)

    def process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and msg["name"] in self.latents:
            msg["scale"] = self.scale if msg.get("scale") is None else self.scale * msg["scale"]
