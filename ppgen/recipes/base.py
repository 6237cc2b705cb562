"""What a model family declares to ``ppgen.runs`` and the command line: a :class:`Recipe`.

A recipe names its model(s), declares its options (a frozen dataclass whose fields become
the flags of ``ppgen train NAME``), prepares its data, builds a backend's model, objective
and trainer, evaluates a trained run (importance-sampled NLL, exact NLL, classification
error: whatever the family needs), samples it and draws its pictures. ``ppgen.runs`` does
everything families share (config, training with the driver, checkpoints, the run record)
and asks the recipe for the rest, by name, through :data:`ppgen.recipes.RECIPES`.

Backends are reached as modules (:func:`backend`): ``backend("pyro").models.VAE``,
``backend("numpyro").inference.Trainer``, so a recipe never branches on the backend's name;
what differs in calling the two (seeded draws, numpy in and out) is behind each backend's
``ppgen.inference.<backend>.interop``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ppgen import data as ppdata
from ppgen.errors import ConfigError
from ppgen.models.masks import DEGREES

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "BACKENDS",
    "STAND_IN_ROWS",
    "Backend",
    "Built",
    "FitData",
    "IMAGE_SHAPES",
    "Options",
    "Recipe",
    "Splits",
    "backend",
    "exact_likelihood",
    "exact_log_px",
    "image_splits",
    "help_with_default",
    "image_stand_in",
    "layer_sizes",
    "non_negative_float",
    "non_negative_int",
    "option",
    "positive",
    "positive_int",
    "refuse_stand_in",
    "seed_int",
    "stand_in",
    "trainer_settings",
]

BACKENDS = ("pyro", "numpyro")

IMAGE_SHAPES: Mapping[str, tuple[tuple[int, int], int]] = {
    "mnist": ((28, 28), 10),
    "digits": ((8, 8), 10),
}
"""``(image_shape, num_classes)`` of every image dataset (``ppgen.data.IMAGE_DATASETS``), as
its loader's :class:`~ppgen.data.Dataset` has them: what :meth:`Recipe.shapes` builds an
image model from without reading the images."""

STAND_IN_ROWS = 2
"""Rows of the placeholder batch of a :func:`stand_in` (the trainer's ``init`` runs the
objective once on them to find the parameters)."""


# -- option values from the command line ---------------------------------------------------


_KIND_NAMES = {int: "an integer", float: "a number"}


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a positive ``kind`` (int, or a finite float)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {_KIND_NAMES.get(kind, kind.__name__)}, got {text!r}"
            ) from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"expected a positive value, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


positive_int = positive(int)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a value >= 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """An argparse type: a seed, an integer in ``[0, 2**32)`` (what numpy's and JAX's
    seeding take)."""
    value = non_negative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed below 2**32, got {text!r}")
    return value


def layer_sizes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive layer widths, e.g. ``200,200``."""
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 200,200, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def help_with_default(text: str, default: Any) -> str:
    """A flag's help line ending with its default, unless the line already names it or the
    default is ``None`` or ``False`` (an unset option, a switch)."""
    if default is None or default is False or "default" in text:
        return text
    if isinstance(default, tuple):
        default = ",".join(map(str, default))
    return f"{text} (default: {str(default).replace('%', '%%')})"


def _is_int(value: Any, minimum: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value >= minimum


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
    cli: bool = True,
) -> Any:
    """A field of a recipe's :class:`Options`, with what its command-line flag needs.

    Args:
        default: The default value (also the flag's).
        help: One line for ``ppgen train NAME --help``.
        flag: The flag (default ``--`` + the field name with dashes).
        choices: The allowed values of a string option.
        parse: An argparse type for the flag's text (default: the default's type; a bool
            becomes a ``store_true`` switch).
        metavar: The flag's value name in the help.
        cli: Offer a flag (``False``: a setting the recipe derives from the data and stores
            in ``config.json`` through :meth:`Recipe.settle`, e.g. a text model's
            vocabulary; the command line leaves it at its default).
    """
    meta = {
        "help": help,
        "flag": flag,
        "choices": choices,
        "parse": parse,
        "metavar": metavar,
        "cli": cli,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Options:
    """Base of a recipe's options: a frozen dataclass of :func:`option` fields.

    ``__post_init__`` checks every field that has ``choices``, turns lists into tuples, and
    refuses a non-positive value of a field parsed by :func:`positive_int` or
    :func:`layer_sizes`; subclasses add their own checks (raising ``ConfigError``) after
    calling it.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            if value is None and f.default is None:
                continue  # an optional setting left out
            choices, parse = f.metadata.get("choices"), f.metadata.get("parse")
            if choices is not None and value not in choices:
                raise ConfigError(
                    f"unknown {f.name} {value!r}; choose one of {', '.join(map(str, choices))}"
                )
            if parse is positive_int and not _is_int(value, 1):
                raise ConfigError(f"{f.name} must be a positive integer, got {value!r}")
            if parse is non_negative_int and not _is_int(value, 0):
                raise ConfigError(f"{f.name} must be an integer >= 0, got {value!r}")
            if parse is layer_sizes:
                if not (isinstance(value, tuple) and value and all(_is_int(v, 1) for v in value)):
                    raise ConfigError(f"{f.name} must be positive layer sizes, got {value!r}")
            # Values read back from an edited config.json have the type of the default.
            kind = type(f.default)
            if kind is bool and not isinstance(value, bool):
                raise ConfigError(f"{f.name} must be true or false, got {value!r}")
            if kind is str and not isinstance(value, str):
                raise ConfigError(f"{f.name} must be a string, got {value!r}")
            if kind is float and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One flag per field (see :func:`option`), under the group "model options"."""
        group = parser.add_argument_group(f"{cls.__name__} (model options)")
        for flag, kwargs in cls.flags().items():
            group.add_argument(flag, **kwargs)

    @classmethod
    def flags(cls) -> dict[str, dict[str, Any]]:
        """``flag -> add_argument keywords`` of every field that has a flag (dest: the
        field's name, default: its default)."""
        out = {}
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if not meta.get("cli", True):
                continue
            kwargs: dict[str, Any] = {
                "dest": f.name,
                "default": f.default,
                "help": help_with_default(meta["help"], f.default),
            }
            if isinstance(f.default, bool) and meta.get("parse") is None:
                kwargs["action"] = "store_true"
            else:
                parse = meta.get("parse") or (type(f.default) if f.default is not None else str)
                kwargs.update(type=parse, choices=meta.get("choices"), metavar=meta.get("metavar"))
            out[meta.get("flag") or "--" + f.name.replace("_", "-")] = kwargs
        return out

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options a parsed command line holds (fields without a flag at their
        defaults)."""
        return cls(
            **{
                f.name: getattr(args, f.name)
                for f in dataclasses.fields(cls)
                if f.metadata.get("cli", True)
            }
        )

    def to_json(self) -> dict[str, Any]:
        """The options as JSON-able values (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Options:
        """Options from :meth:`to_json`'s output (lists back to tuples).

        Raises:
            ConfigError: An unknown option (naming the known ones) or a bad value.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; it takes "
                f"{', '.join(names)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


@dataclass(frozen=True)
class MADEDegrees(Options):
    """The stored ``degrees`` setting of a family whose networks are MADEs (``made``; the
    ``maf``, ``iaf`` and ``nsf_ar`` flows): mask set 0's hidden degrees, ``"spread"`` over
    ``1..D-1`` for new runs; a run stored before the setting existed was trained with the
    ``"cyclic"`` degrees and is read back with them (:func:`ppgen.models.masks.made_degrees`).
    No flag: a new run always spreads."""

    degrees: str = option(
        "spread",
        "MADE's hidden degrees: spread evenly over 1..D-1 (runs from 2026-12 on) or cyclic "
        "(earlier runs, read back as they were trained)",
        choices=DEGREES,
        cli=False,
    )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Options:
        """As :meth:`Options.from_json`, with ``degrees`` ``"cyclic"`` where it is absent."""
        return super().from_json({"degrees": "cyclic", **raw})


# -- what a recipe hands back ----------------------------------------------------------------


class Splits(NamedTuple):
    """The train, validation (``None`` when training on all of it) and test sets."""

    train: ppdata.Dataset
    valid: ppdata.Dataset | None
    test: ppdata.Dataset


@dataclass(frozen=True)
class FitData:
    """What a family's trainer fits and is validated on.

    Attributes:
        train: What ``Trainer.train_epoch`` takes: ``x``, or ``(x, y)`` with ``y = -1``
            where unlabelled.
        valid: What ``Trainer.evaluate`` validates on (``None``: no validation).
        test: The test set in the same form (``x``, or ``(x, y)``).
        num_data: Examples per epoch of the schedule (the trainer's ``num_data``).
        image_shape: ``(height, width)`` of the images the model draws, for pictures
            (``None``: the data are not images, e.g. text or audio).
        num_classes: Classes of the dataset's labels (``None`` without labels).
        stand_in: ``True`` where the data were not read (:meth:`Recipe.shapes`, for
            sampling a run from its directory alone): ``train`` is then a placeholder batch
            of the training data's shapes and dtypes, ``valid`` and ``test`` are ``None``,
            ``num_data`` is the run's batch size; ``image_shape`` and ``num_classes`` are
            the dataset's. Nothing is evaluated on it (``ppgen.runs.evaluate`` refuses).
    """

    train: Any
    valid: Any
    test: Any
    num_data: int
    image_shape: tuple[int, int] | None = None
    num_classes: int | None = None
    stand_in: bool = False

    @property
    def x_dim(self) -> int:
        """Features per training example (the second dimension of ``train``, or of its
        ``x``)."""
        x = self.train[0] if isinstance(self.train, tuple) else self.train
        return int(np.shape(x)[1])

    @property
    def test_x(self) -> np.ndarray:
        """The test inputs (``test``, or its ``x``)."""
        return self.test[0] if isinstance(self.test, tuple) else self.test


class Built(NamedTuple):
    """A backend's model, objective and trainer, as a recipe builds them; ``on_epoch``, if
    given, is called as ``on_epoch(record, run_dir)`` after every epoch of a run's training
    (e.g. to draw the samples of the epoch's validation: pictures over training)."""

    model: Any
    objective: Any
    trainer: Any
    on_epoch: Any = None


class Backend(NamedTuple):
    """A backend as two modules: ``ppgen.models.<name>`` and ``ppgen.inference.<name>``."""

    name: str
    models: ModuleType
    inference: ModuleType


def backend(name: str) -> Backend:
    """The backend called ``name`` (``"pyro"`` or ``"numpyro"``), imported on first use.

    Raises:
        ConfigError: An unknown backend.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return Backend(
        name,
        importlib.import_module(f"ppgen.models.{name}"),
        importlib.import_module(f"ppgen.inference.{name}"),
    )


def stand_in(
    config: RunConfig,
    train: Any,
    *,
    image_shape: tuple[int, int] | None = None,
    num_classes: int | None = None,
) -> FitData:
    """The :class:`FitData` of :meth:`Recipe.shapes`: the placeholder batch ``train`` (``x``,
    ``(N, ...)``, or a tuple of arrays of ``N`` rows, shaped and typed as the training data:
    any values the model's likelihood takes, they never train anything), no validation or
    test set, the dataset's ``image_shape`` and ``num_classes``, and ``num_data`` the run's
    batch size (a trainer takes no fewer examples per epoch than one batch)."""
    return FitData(
        train=train,
        valid=None,
        test=None,
        num_data=config.batch_size,
        image_shape=image_shape,
        num_classes=num_classes,
        stand_in=True,
    )


def refuse_stand_in(run: Run, what: str) -> None:
    """Refuse ``what`` (a phrase: ``"evaluating"``) on a run loaded without its data.

    Raises:
        ConfigError: ``run.data.stand_in`` (``load_trained(..., data=False)``).
    """
    if run.data.stand_in:
        raise ConfigError(
            f"{what} {run.directory} needs its data, and it was loaded without them "
            "(load_trained(..., data=False), for sampling): load it with load_trained(run_dir)"
        )


def image_stand_in(
    config: RunConfig, *, labels: bool = False, x: np.ndarray | None = None
) -> FitData:
    """:func:`stand_in` of an image dataset (:data:`IMAGE_SHAPES`): ``x`` (default: zeros,
    float32 ``(STAND_IN_ROWS, H * W)``) and, with ``labels``, the one-hot classes
    ``(STAND_IN_ROWS, C)`` as ``(x, labels)``; ``num_classes`` is the dataset's.

    Raises:
        ConfigError: ``config.dataset`` is not an image dataset.
    """
    if config.dataset not in IMAGE_SHAPES:
        raise ConfigError(
            f"{config.dataset!r} is not an image dataset; choose one of {', '.join(IMAGE_SHAPES)}"
        )
    (h, w), classes = IMAGE_SHAPES[config.dataset]
    if x is None:
        x = np.zeros((STAND_IN_ROWS, h * w), np.float32)
    train = (x, np.eye(classes, dtype=np.float32)[np.arange(len(x)) % classes]) if labels else x
    return stand_in(config, train, image_shape=(h, w), num_classes=classes)


def image_splits(dataset: str, train_split: str, binarize: str, seed: int) -> Splits:
    """Train, validation and test images of ``dataset``.

    ``binarize="dynamic"`` keeps grey training values (the trainer draws fresh binary pixels
    every step); ``"static"`` draws them once with ``seed``; ``"none"`` keeps grey values.
    Validation and test sets are binarized once with seed 0 unless ``"none"``, so every run
    is evaluated on the same binary images. ``train_split="train_full"`` has no validation
    set.
    """
    train_mode = {"dynamic": "none", "static": "static", "none": "none"}[binarize]
    eval_mode = "none" if binarize == "none" else "static"
    train = ppdata.load_dataset(dataset, train_split, binarize=train_mode, seed=seed)
    valid = None
    if train_split == "train":
        valid = ppdata.load_dataset(dataset, "valid", binarize=eval_mode, seed=0)
    test = ppdata.load_dataset(dataset, "test", binarize=eval_mode, seed=0)
    return Splits(train, valid, test)


def exact_likelihood(
    config: RunConfig, data: FitData, backend: Backend, model: Any, transform: Any = None
) -> Built:
    """What a family without latent sites trains with: ``model`` (a model-guide pair with
    an empty guide), the ELBO (for such a model the exact log-likelihood) and the backend's
    ``Trainer`` with the run's shared settings, ``num_data`` training examples per epoch and
    the trainer's data ``transform`` (e.g. dynamic binarization, dequantisation noise)."""
    objective = backend.inference.ELBO()
    trainer = backend.inference.Trainer(
        model.model,
        model.guide,
        objective,
        num_data=data.num_data,
        transform=transform,
        **trainer_settings(config, max(1, data.num_data // config.batch_size)),
    )
    return Built(model, objective, trainer)


def exact_log_px(run: Run, data: Any, *, batch_size: int, progress: bool) -> np.ndarray:
    """``log p(x)`` (nats, float64, one per row) of ``data`` (``x``, or ``(x, context,
    ...)``) under a run of a family without latent sites, through ppgen's estimator: with an
    empty guide every importance weight is ``p(x)`` itself, so one sample is exact."""
    inference = run.backend.inference
    log_px = inference.draw(
        inference.evaluate_log_likelihood,
        run.model.model,
        run.model.guide,
        data,
        seed=run.config.seed,
        num_samples=1,
        batch_size=batch_size,
        chunk_size=1,
        progress=progress,
    )
    return np.asarray(log_px, dtype=np.float64)


def trainer_settings(config: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
    """The trainer arguments every family takes from the shared settings of a run: learning
    rate and its schedule over the run's steps, weight decay, batch size, devices, and the recipe's
    :meth:`Recipe.epoch_loop`."""
    return {
        "epoch_loop": config.recipe.epoch_loop(config),
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "weight_decay": config.weight_decay,
        "total_steps": config.epochs * max(1, steps_per_epoch),
        "batch_size": config.batch_size,
        "devices": config.devices,
    }


class Recipe:
    """A model family, as ``ppgen.runs`` and the command line see it.

    Subclass it (or configure an instance) and :func:`ppgen.recipes.register` it. Attributes:

    - ``name``: the model's name (``ppgen train NAME``, ``config.json``'s ``model``);
    - ``help``: one line for ``ppgen train --help``; ``description``: its own help page;
    - ``options``: the :class:`Options` subclass of its settings;
    - ``defaults``: its defaults of the shared settings (e.g. ``{"lr": 3e-4}``);
    - ``datasets``: the datasets it takes (default: every registered one);
    - ``fixed_settings``: shared settings the family fixes, whose flags ``ppgen train NAME``
      does not offer (e.g. ``{"train_split": "train"}``: it selects on validation);
    - ``eval_flags``: the ``ppgen eval`` flags its :meth:`evaluate` uses (of ``k``,
      ``limit``, ``batch_size``); the others, given for its runs, are named as unused on
      stderr, not refused (they are flags of every run, and scripts evaluate runs of every
      family alike), whereas a family's own ``sample_options`` flag given for another
      family's run is refused;
    - ``eval_report``: what :meth:`evaluate` reports, a phrase for ``ppgen eval --help``
      (e.g. ``"the exact test NLL in nats (and bits/dim for images)"``);
    - ``sample_suffix``: the file ``ppgen sample`` writes (``".png"``: an image grid; a
      family of text or audio writes ``".txt"`` or ``".wav"`` in :meth:`save_samples`);
    - ``sample_options``: the :class:`Options` subclass of its sampling settings (e.g. a
      text model's temperature and prompt), offered as flags of ``ppgen sample`` and
      passed to :meth:`sample` as ``options=``; the base class has none;
    - ``sample_count``: how many samples ``ppgen sample`` draws without ``-n``;
    - ``max_samples``: the most :meth:`sample` draws in one call (they are held in memory
      together; :meth:`check_sample_count` refuses more).

    Methods return plain values; the backend is passed in, never imported by name.
    """

    name: str
    help: str = ""
    description: str = ""
    options: type[Options] = Options
    defaults: Mapping[str, Any] = {}
    datasets: tuple[str, ...] | None = None
    fixed_settings: Mapping[str, Any] = {}
    eval_flags: tuple[str, ...] = ()
    eval_report: str = ""
    sample_suffix: str = ".png"
    sample_options: type[Options] = Options
    sample_count: int = 64
    max_samples: int = 10_000

    def from_v1(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """This family's options from a flat config written before recipes (format v1):
        the fields of :attr:`options` found there (override to fill in old defaults)."""
        names = {f.name for f in dataclasses.fields(self.options)}
        return {k: v for k, v in raw.items() if k in names}

    def prepare(self, config: RunConfig) -> FitData:
        """The data the run fits, validates on and is tested on."""
        raise NotImplementedError

    def shapes(self, config: RunConfig) -> FitData | None:
        """What :meth:`build` needs of the data, without reading it: a :func:`stand_in`
        (``FitData.stand_in``: a placeholder training batch of the data's shapes and
        dtypes, the dataset's image shape and classes), from the config (e.g. a stored
        vocabulary) and what is known of the dataset (:data:`IMAGE_SHAPES`).
        ``ppgen.runs.load_trained(..., data=False)`` builds a trained run from it to sample
        it from its directory alone; the checkpoint's weights replace whatever the
        placeholder made. ``None`` (the default): the family needs its data to build the
        model (or this run's config does not hold what it needs), and :meth:`prepare`
        reads them.

        Raises:
            ConfigError: A setting the data's shapes refuse (as :meth:`prepare` would).
        """
        return None

    def settle(self, config: RunConfig, data: FitData) -> RunConfig:
        """The config a new run stores, with the settings it derives from its data filled
        in (fields declared with ``option(..., cli=False)``, e.g. a text model's
        vocabulary), so that a trained run is rebuilt with them; the default: ``config``."""
        return config

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        """The backend's model, objective and trainer for ``config`` and ``data``."""
        raise NotImplementedError

    def epoch_loop(self, config: RunConfig) -> str:
        """How the NumPyro trainer compiles an epoch of this run (``Trainer(epoch_loop=)``):
        ``"scan"`` (the default: one ``lax.scan``) or ``"steps"`` (a jitted step per batch),
        which a family with convolutional networks returns: XLA on CPU runs convolutions
        many times slower inside a scan. The updates are the same either way."""
        return "scan"

    def loss_unit(self, config: RunConfig) -> str:
        """The unit of the training loss and curves, per training example (the default:
        ``"nats per example"``; a family whose example is a window or segment names it)."""
        return "nats per example"

    def evaluate(self, run: Run, **settings: Any) -> dict[str, Any]:
        """The test figures of a trained run (JSON-able); ``settings`` are the ``ppgen
        eval`` flags (``k``, ``limit``, ``batch_size``, ``progress``), each family using
        those it needs."""
        raise NotImplementedError

    def summary(self, result: Mapping[str, Any]) -> str:
        """One line of :meth:`evaluate`'s result for ``ppgen eval``."""
        return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, int | float))

    def check_sample_count(self, n: int, options: Options | None = None) -> None:
        """Refuse a draw too large to hold in memory at once, before it starts (the default:
        more than :attr:`max_samples` samples; a family whose samples vary in size, text or
        audio, also bounds their total length).

        Raises:
            ConfigError: ``n`` is not a positive integer, or the draw is too large.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ConfigError(f"the number of samples must be a positive integer, got {n!r}")
        if n > self.max_samples:
            raise ConfigError(
                f"{n} samples are more than the {self.max_samples} {self.name} draws at once "
                "(they are held in memory together); ask for fewer, and draw again with "
                "another --seed for more"
            )

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        """``n`` images from a trained run, numpy ``(n, D)``. A recipe with
        :attr:`sample_options` takes them too, as ``sample(run, n, seed, options=...)``."""
        raise NotImplementedError

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        """Write :meth:`sample`'s draws to ``path`` (a new file ending in
        :attr:`sample_suffix`) for ``ppgen sample``; the default is one PNG grid of images.
        Returns the path written."""
        from ppgen import plots

        return plots.save_image_grid(samples, path, run.data.image_shape)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """Write the family's pictures of a trained run; return their paths."""
        return []
