"""The run configuration (``config.json``): shared settings plus the family's options.

A :class:`RunConfig` holds what every family shares (the model's name, backend, dataset,
epochs, batch size, learning rate and schedule, seed, evaluation cadence, devices,
tracking) and ``options``, the model's recipe's own settings (``VAEOptions``,
``M2Options``, ...). It is stored as

    {"format": "ppgen-run-v2", "model": "vae", "backend": "numpyro", ..., "options": {...}}

Configs written before recipes (format v1: every family's settings in one flat dict) are
read through :func:`migrate_v1`, so old run directories load, evaluate and resume.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppgen.data import DATASETS
from ppgen.errors import CheckpointError, ConfigError, PPGenError
from ppgen.inference.optim import LR_SCHEDULES, weight_decay_value
from ppgen.recipes.base import BACKENDS, Options

__all__ = [
    "CONFIG_FORMAT",
    "RUN_DEFAULTS",
    "RunConfig",
    "load_config",
    "make_config",
    "migrate_v1",
]

CONFIG_FORMAT = "ppgen-run-v2"
_V1 = "ppgen-run-v1"
TRAIN_SPLITS = ("train", "train_full")


def _recipe(name: str):
    from ppgen.recipes import get_recipe  # importing the package registers every family

    return get_recipe(name)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run (stored as ``config.json``).

    Attributes:
        model: The model's name: a registered recipe (``ppgen.recipes.RECIPES``).
        backend: ``"pyro"`` or ``"numpyro"``.
        dataset: A registered dataset (``ppgen.data.DATASETS``).
        epochs: Total epochs (a resumed run continues up to this number).
        batch_size: Examples per training step.
        lr: Learning rate (peak rate under a schedule).
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"exponential"`` over the run.
        weight_decay: Weight decay ``lambda >= 0`` (AdamW's decoupled decay; see
            :class:`ppgen.inference.optim.Group`); 0: none.
        seed: Seed of the whole run (weights, labels drawn, every epoch's randomness).
        eval_every: Evaluate on the validation set every this many epochs.
        patience: Stop after this many evaluations without improvement (None: never).
        train_split: ``"train"`` (with a validation split) or ``"train_full"``.
        devices: Data-parallel devices (processes on Pyro, a JAX mesh on NumPyro).
        tensorboard: Also write TensorBoard events (``<run>/tensorboard``).
        options: The recipe's options (``None``: its defaults).

    Raises:
        ConfigError: An unknown model, backend, dataset or schedule, an out-of-range
            value, or options of another recipe.
    """

    model: str = "vae"
    backend: str = "numpyro"
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 0.0
    seed: int = 0
    eval_every: int = 1
    patience: int | None = None
    train_split: str = "train"
    devices: int = 1
    tensorboard: bool = False
    options: Options | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str):
            raise ConfigError(f"model must be a model's name, got {self.model!r}")
        recipe = _recipe(self.model)
        datasets = recipe.datasets or tuple(DATASETS)
        for name, value, choices in [
            ("backend", self.backend, BACKENDS),
            ("dataset", self.dataset, datasets),
            ("lr_schedule", self.lr_schedule, LR_SCHEDULES),
            ("train_split", self.train_split, TRAIN_SPLITS),
        ]:
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        for name in ("epochs", "batch_size", "eval_every", "devices"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.patience is not None and not (
            isinstance(self.patience, int) and self.patience >= 1
        ):
            raise ConfigError(f"patience must be a positive integer, got {self.patience!r}")
        if isinstance(self.seed, bool) or not (
            isinstance(self.seed, int) and 0 <= self.seed < 2**32
        ):
            raise ConfigError(f"seed must be an integer in [0, 2**32), got {self.seed!r}")
        if isinstance(self.lr, bool) or not (
            isinstance(self.lr, int | float) and self.lr > 0 and math.isfinite(self.lr)
        ):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        weight_decay_value("weight_decay", self.weight_decay)
        if not isinstance(self.tensorboard, bool):
            raise ConfigError(f"tensorboard must be true or false, got {self.tensorboard!r}")
        options = self.options if self.options is not None else recipe.options()
        if type(options) is not recipe.options:
            raise ConfigError(
                f"{self.model} takes {recipe.options.__name__}, got {type(options).__name__}"
            )
        object.__setattr__(self, "options", options)

    @property
    def recipe(self):
        """The model's :class:`~ppgen.recipes.base.Recipe`."""
        return _recipe(self.model)

    def to_json(self) -> str:
        """``config.json``'s text."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shared["options"] = self.options.to_json()
        return json.dumps({"format": CONFIG_FORMAT, **shared}, indent=1)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> RunConfig:
        """A config from :meth:`to_json`'s JSON (format v2) or a v1 config (migrated).

        Raises:
            ConfigError: An unknown format, setting or option.
        """
        raw = dict(raw)
        version = raw.pop("format", None)
        if version == _V1:
            raw = migrate_v1(raw)
        elif version != CONFIG_FORMAT:
            raise ConfigError(f"not a ppgen run config (format {version!r})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in the run config")
        recipe = _recipe(raw.get("model", cls.model))
        options = recipe.options.from_json(raw.pop("options", None) or {})
        return cls(**raw, options=options)


RUN_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(RunConfig) if f.name not in ("model", "options")
}
"""The defaults of the shared settings (a recipe's ``defaults`` take precedence)."""


def migrate_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A flat v1 config (every family's settings side by side) as v2 settings: the shared
    ones kept, the model's own moved into ``options`` by its recipe (``Recipe.from_v1``),
    the rest (other families' settings) dropped."""
    shared = {f.name for f in dataclasses.fields(RunConfig)} - {"options"}
    out = {k: v for k, v in raw.items() if k in shared}
    out["options"] = _recipe(raw.get("model", "vae")).from_v1(raw)
    return out


def make_config(model: str, **settings: Any) -> RunConfig:
    """A :class:`RunConfig` from flat settings: shared ones and the model's options by name,
    e.g. ``make_config("m2", backend="pyro", labels=100, epochs=50)``; the recipe's defaults
    of the shared settings (e.g. M2's learning rate) apply where one is not given.

    Raises:
        ConfigError: A setting that neither the run nor the model takes (naming both lists).
    """
    recipe = _recipe(model)
    shared = {f.name for f in dataclasses.fields(RunConfig)} - {"model", "options"}
    option_names = {f.name for f in dataclasses.fields(recipe.options)}
    unknown = sorted(set(settings) - shared - option_names)
    if unknown:
        raise ConfigError(
            f"{model} takes no setting(s) {', '.join(unknown)}; the run takes "
            f"{', '.join(sorted(shared))} and the model {', '.join(sorted(option_names))}"
        )
    given = {k: v for k, v in settings.items() if k in shared}
    options = recipe.options(**{k: v for k, v in settings.items() if k in option_names})
    return RunConfig(model=model, **{**dict(recipe.defaults), **given}, options=options)


def load_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read ``<run_dir>/config.json`` (either format).

    Raises:
        CheckpointError: No such file, or not a readable ppgen run config.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        what = "a file" if run_dir.exists() else "no such directory"
        raise CheckpointError(f"{run_dir} is not a ppgen run directory ({what})")
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError as e:
        raise CheckpointError(f"{run_dir} is not a ppgen run directory (no config.json)") from e
    except ValueError as e:  # not JSON, or not UTF-8 text
        if not any((run_dir / name).exists() for name in ("checkpoints", "metrics.jsonl")):
            raise CheckpointError(
                f"{run_dir} is not a ppgen run directory (its config.json is not ppgen's)"
            ) from e
        raise CheckpointError(f"{path} is corrupt ({e}); it cannot be loaded") from e
    if not isinstance(raw, dict) or raw.get("format") not in (CONFIG_FORMAT, _V1):
        raise CheckpointError(f"{path} is not a ppgen run config")
    try:
        return RunConfig.from_json(raw)
    except (PPGenError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} does not describe a run this ppgen can load: {e}") from e
