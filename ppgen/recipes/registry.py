"""The registry of model families: name -> :class:`~ppgen.recipes.base.Recipe`."""

from __future__ import annotations

from ppgen.errors import ConfigError
from ppgen.recipes.base import Recipe

__all__ = ["RECIPES", "get_recipe", "register"]

RECIPES: dict[str, Recipe] = {}
"""Every registered recipe by model name, in registration order (the CLI lists them so)."""


def register(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Add ``recipe`` under ``recipe.name``; returns it (so a module can register on import).

    Raises:
        ConfigError: A name that is not a lower-case word, or one already taken (unless
            ``replace``).
    """
    name = getattr(recipe, "name", None)
    if not (isinstance(name, str) and name.replace("_", "").isalnum() and name.islower()):
        raise ConfigError(f"a recipe's name must be a lower-case word like 'vae', got {name!r}")
    if name in RECIPES and not replace and RECIPES[name] is not recipe:
        raise ConfigError(f"a recipe named {name!r} is already registered; pass replace=True")
    RECIPES[name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe of the model called ``name``.

    Raises:
        ConfigError: No such model (naming the registered ones).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(RECIPES)}") from None
