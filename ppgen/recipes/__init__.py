"""Model families as recipes: one module per family, registered by name.

Adding a family is one recipe module (a :class:`Recipe` registered with :func:`register`)
and one import line below; nothing else in ppgen changes (docs/ARCHITECTURE.md).
"""

# One line per family: importing its module registers its recipes.
from ppgen.recipes import (
    aae,  # noqa: E402, F401  (aae)
    ar_images,  # noqa: E402, F401  (fvsbn, nade, made, pixelcnn)
    bigan,  # noqa: E402, F401  (bigan)
    cgan,  # noqa: E402, F401  (cgan)
    charrnn,  # noqa: E402, F401  (charrnn)
    flow,  # noqa: E402, F401  (flow)
    flowgan,  # noqa: E402, F401  (flowgan)
    infogan,  # noqa: E402, F401  (infogan)
    likelihood_free,  # noqa: E402, F401  (gan, mmd, sinkhorn)
    ssvae,  # noqa: E402, F401  (m2, m1m2)
    vae,  # noqa: E402, F401, I001  (vae, hvae, m1)
    wavenet,  # noqa: E402, F401  (wavenet)
)
from ppgen.recipes.base import Backend, Built, FitData, Options, Recipe, backend, option
from ppgen.recipes.registry import RECIPES, get_recipe, register

__all__ = [
    "RECIPES",
    "Backend",
    "Built",
    "FitData",
    "Options",
    "Recipe",
    "backend",
    "get_recipe",
    "option",
    "register",
]
