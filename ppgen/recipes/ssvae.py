"""The semi-supervised VAE family of Kingma et al. 2014: ``m2`` (the class is a latent
variable, observed where a label exists) and ``m1m2`` (M2 on the latent features of a
trained ``m1`` run, the paper's stacked model).

Both train on partially labelled data, ``y = -1`` where missing, with the labelled and
unlabelled schedule (one batch of each per step) and the exact sum over the class of every
unlabelled example; the driver keeps the checkpoint with the lowest validation error, and a
run is evaluated by its test classification error.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.metrics import active_units
from ppgen.models.conventions import ACTIVATION_NAMES
from ppgen.recipes import base
from ppgen.recipes.base import Backend, Built, FitData, Options, Recipe, option
from ppgen.recipes.registry import register
from ppgen.recipes.vae import EVAL_SPLITS, Features, m1_features
from ppgen.semisupervised import save_confusion, test_error_result, test_error_summary

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["M1M2Options", "M2Options", "StackedData"]


@dataclass(frozen=True)
class _SemiSupervisedOptions(Options):
    labels: int = option(
        100,
        "labelled training examples (class-balanced, drawn by --seed; a multiple of the "
        "number of classes, 10)",
        parse=base.positive_int,
    )
    alpha: float | None = option(
        None,
        "weight of the classification term per labelled example (default: the paper's "
        "0.1 N, i.e. 0.1 * N / labels)",
        parse=base.non_negative_float,
    )
    labelled_batch_size: int | None = option(
        None, "labelled examples per step (default: --batch-size)", parse=base.positive_int
    )
    k: int = option(1, "particles: draws of z per (example, class)", parse=base.positive_int)
    latent: int = option(50, "dimension of z", parse=base.positive_int)
    hidden: tuple[int, ...] = option(
        (500,), "hidden layer widths, e.g. 500", parse=base.layer_sizes
    )
    activation: str = option("softplus", "hidden activation", choices=ACTIVATION_NAMES)

    def __post_init__(self) -> None:
        super().__post_init__()
        alpha = self.alpha
        if alpha is not None and (
            isinstance(alpha, bool)
            or not (isinstance(alpha, int | float) and alpha >= 0 and math.isfinite(alpha))
        ):
            raise ConfigError(
                f"alpha must be a finite number >= 0 (or None for 0.1 N), got {alpha!r}"
            )


@dataclass(frozen=True)
class M2Options(_SemiSupervisedOptions):
    """Settings of ``m2`` (defaults: the paper's networks, one layer of 500 softplus, z=50)."""

    binarize: str = option(
        "dynamic",
        "dynamic: fresh Bernoulli pixels every step (default); static: drawn once; none: "
        "grey values, scored by the Bernoulli cross-entropy (as Pyro's tutorial, and faster "
        "per CPU-minute, see docs/RESULTS.md)",
        choices=("dynamic", "static", "none"),
    )


@dataclass(frozen=True)
class M1M2Options(_SemiSupervisedOptions):
    """Settings of ``m1m2``: M2 with a Gaussian likelihood on an ``m1`` run's features."""

    m1_run: str | None = option(
        None, "the trained m1 run directory (required)", flag="--m1", parse=str
    )
    m1_features: str = option(
        "sample",
        "train on z1 ~ q(z1 | x) drawn afresh every step (default, as the paper) or on M1's "
        "posterior means",
        choices=("sample", "mean"),
    )
    m1_units: str = option(
        "all",
        "model all of M1's latent units (default, as the paper) or only the active ones, whose "
        "posterior mean varies over the training images",
        choices=("all", "active"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.m1_run:
            raise ConfigError("m1m2 models the features of a trained M1 run: pass --m1 RUN_DIR")
        if not isinstance(self.m1_run, str | os.PathLike):
            raise ConfigError(f"m1_run must be a run directory, got {self.m1_run!r}")
        object.__setattr__(self, "m1_run", str(self.m1_run))


@dataclass(frozen=True)
class StackedData(FitData):
    """M1+M2's data: M1's features of the kept units, M1's run and its posterior scales.

    Attributes:
        m1: The trained M1 run (its decoder draws M2's samples as images).
        units: Indices of M1's latent units M2 models.
        input_scale: M1's posterior standard deviations of the training features (the
            trainer draws ``z1 ~ N(loc, scale^2)`` afresh every step), or ``None`` to
            train on the means.
    """

    m1: Any = None
    units: np.ndarray | None = None
    input_scale: np.ndarray | None = None


def _labelled(train: Features | ppdata.Dataset, config: RunConfig, num_classes: int) -> np.ndarray:
    return ppdata.partial_labels(
        train.y, config.options.labels, num_classes=num_classes, seed=config.seed
    )


class SemiSupervisedRecipe(Recipe):
    """``m2`` and (``stacked``) ``m1m2``."""

    defaults = {"lr": 3e-4}
    datasets = ppdata.IMAGE_DATASETS
    fixed_settings = {"train_split": "train"}  # the best epoch is chosen on validation
    eval_report = "the test classification error of q(y|x)"

    def __init__(self, name: str, help: str, options: type[Options], *, stacked: bool) -> None:
        self.name, self.help, self.description = name, help, help
        self.options, self.stacked = options, stacked

    def from_v1(self, raw: dict[str, Any]) -> dict[str, Any]:
        out = super().from_v1(raw)
        if self.stacked:
            # Written before M1+M2 could sample z1 (trained on the means) or drop units.
            out["m1_features"] = "sample" if raw.get("m1_sample", False) else "mean"
        return out

    def prepare(self, config: RunConfig) -> FitData:
        if config.train_split != "train":
            raise ConfigError("semi-supervised runs select their model on the validation split")
        if self.stacked:
            return self._stacked(config)
        splits = base.image_splits(config.dataset, "train", config.options.binarize, config.seed)
        num_classes = splits.train.num_classes
        y = _labelled(splits.train, config, num_classes)
        return FitData(
            train=(splits.train.x, y),
            valid=(splits.valid.x, splits.valid.y),
            test=(splits.test.x, splits.test.y),
            num_data=int(np.sum(y == ppdata.MISSING)),
            image_shape=splits.test.image_shape,
            num_classes=num_classes,
        )

    def shapes(self, config: RunConfig) -> FitData | None:
        """Placeholder examples: one labelled example of every class and two unlabelled
        ones (zeros, float32 ``(C + 2, D)``, with their labels); M1+M2 loads its M1 run
        for sampling too (``None`` with ``--m1-units active``: which of M1's units M2
        models is found on M1's features of the training images)."""
        if config.train_split != "train":
            raise ConfigError("semi-supervised runs select their model on the validation split")
        image = base.image_stand_in(config)
        classes = image.num_classes
        y = np.concatenate([np.arange(classes), np.full(base.STAND_IN_ROWS, ppdata.MISSING)])
        if not self.stacked:
            x = np.zeros((len(y), image.x_dim), np.float32)
            shape = image.image_shape
            return base.stand_in(config, (x, y), image_shape=shape, num_classes=classes)
        o = config.options
        if o.m1_units != "all":
            return None
        m1 = self._m1(config, data=False)
        units = np.arange(m1.config.options.latent)
        x = np.zeros((len(y), len(units)), np.float32)
        return StackedData(
            train=(x, y),
            valid=None,
            test=None,
            num_data=config.batch_size,
            image_shape=m1.data.image_shape,
            num_classes=m1.data.num_classes,
            stand_in=True,
            m1=m1,
            units=units,
            input_scale=np.ones_like(x) if o.m1_features == "sample" else None,
        )

    def _m1(self, config: RunConfig, *, data: bool = True) -> Run:
        """The trained M1 run of an M1+M2 config (``data``: as ``load_trained``'s).

        Raises:
            ConfigError: It is not an M1 (VAE) run, or of another dataset.
        """
        from ppgen.runs import load_trained

        o = config.options
        m1 = load_trained(o.m1_run, data=data)
        if m1.config.model not in ("m1", "vae"):
            raise ConfigError(
                f"{o.m1_run} holds a {m1.config.model} run; M1+M2 needs an m1 (VAE) run"
            )
        if m1.config.dataset != config.dataset:
            raise ConfigError(
                f"the M1 run {o.m1_run} was trained on {m1.config.dataset}, but this run's "
                f"--dataset is {config.dataset}: pass --dataset {m1.config.dataset}"
            )
        return m1

    def _stacked(self, config: RunConfig) -> StackedData:
        o = config.options
        m1 = self._m1(config)
        f = m1_features(m1)
        keep = stacked_units(f["train"].x, o.m1_units, o.m1_run)
        f = {s: Features(f[s].x[:, keep], f[s].scale[:, keep], f[s].y) for s in EVAL_SPLITS}
        num_classes = m1.data.num_classes
        y = _labelled(f["train"], config, num_classes)
        return StackedData(
            train=(f["train"].x, y),
            valid=(f["valid"].x, f["valid"].y),
            test=(f["test"].x, f["test"].y),
            num_data=int(np.sum(y == ppdata.MISSING)),
            image_shape=m1.data.image_shape,
            num_classes=num_classes,
            m1=m1,
            units=keep,
            input_scale=f["train"].scale if o.m1_features == "sample" else None,
        )

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        o, inference = config.options, backend.inference
        model = backend.models.SSVAE(
            data.x_dim,
            num_classes=data.num_classes,
            latent=o.latent,
            hidden=o.hidden,
            activation=o.activation,
            likelihood="gaussian" if self.stacked else "bernoulli",
            seed=config.seed,
        )
        objective = inference.SemiSupervisedELBO(alpha=o.alpha, num_particles=o.k)
        transform = None
        if self.stacked and data.input_scale is not None:
            transform = inference.InputNoise(data.input_scale)
        elif not self.stacked and o.binarize == "dynamic":
            transform = inference.DynamicBinarization()
        trainer = inference.Trainer(
            model.model,
            model.guide,
            objective,
            schedule=ppdata.LabelledBatches(data.num_classes, o.labelled_batch_size),
            transform=transform,
            evaluator=inference.ClassifierEvaluator(),
            **base.trainer_settings(config, data.num_data // config.batch_size),
        )
        return Built(model, objective, trainer)

    def evaluate(self, run: Run, **_: Any) -> dict[str, Any]:
        """Test classification error of ``argmax q(y | x)`` with its confusion matrix."""
        started = time.perf_counter()
        x_test, y_test = run.data.test
        evaluator = run.trainer.evaluator
        return test_error_result(
            y_test,
            evaluator.predict(run.trainer, run.state, x_test),
            num_classes=run.data.num_classes,
            labels=run.config.options.labels,
            epoch=run.epoch + 1,
            started=started,
            valid_error=float(evaluator(run.trainer, run.state, run.data.valid)["error"]),
        )

    def summary(self, out: dict[str, Any]) -> str:
        return test_error_summary(self.name, out)

    def class_samples(self, run: Run, per_class: int = 10, seed: int = 0) -> np.ndarray:
        """Images drawn class by class: ``(C * per_class, D)``, one class per row of a grid.

        M1+M2 samples M1's latent features from M2 and decodes them with M1's decoder, the
        units M2 does not model at their prior mean, 0.
        """
        y = np.repeat(np.arange(run.data.num_classes), per_class)
        out = np.asarray(run.backend.inference.draw(run.model.sample, len(y), seed=seed, y=y))
        if not self.stacked:
            return out
        m1 = run.data.m1
        full = np.zeros((len(out), m1.config.options.latent), out.dtype)
        full[:, run.data.units] = out
        return np.asarray(m1.backend.inference.compute(m1.model.decode, full))

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        """``n`` images, the classes in turn (``ceil(n / C)`` per class)."""
        per_class = -(-n // run.data.num_classes)
        return self.class_samples(run, per_class=per_class, seed=seed)[:n]

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        shape, c = run.data.image_shape, run.data.num_classes
        paths = [
            save_confusion(self.name, self.evaluate(run), out_dir / "confusion.png"),
            plots.save_training_curves(
                out_dir / "metrics.jsonl",
                out_dir / "curves.png",
                keys=("loss",),
                right_keys=("valid_error",),
                right_label="validation error",
            ),
            plots.save_image_grid(  # a row of ten samples per class
                self.class_samples(run, per_class=10), out_dir / "class_samples.png", shape, ncol=10
            ),
        ]
        if not self.stacked:
            # Each row: a test image, then its style written as every class (Kingma et al.
            # 2014, fig. 1).
            x = run.data.test[0][:8]
            styles = run.backend.inference.compute(run.model.analogies, x, np.arange(c))
            grid = np.concatenate([x[:, None], np.asarray(styles)], axis=1).reshape(-1, x.shape[1])
            paths.append(plots.save_image_grid(grid, out_dir / "analogies.png", shape, ncol=c + 1))
        return paths


def stacked_units(features: np.ndarray, units: str, m1_run: str) -> np.ndarray:
    """Indices of M1's latent units M2 models: every one (``"all"``) or those active on the
    training images (``"active"``, :func:`ppgen.metrics.active_units`).

    Raises:
        ConfigError: ``"active"`` and no unit is active.
    """
    if units == "all":
        return np.arange(features.shape[1])
    keep = np.flatnonzero(active_units(features))
    if len(keep) == 0:
        raise ConfigError(
            f"the M1 run in {m1_run} has no active latent unit (its posterior is the prior for "
            "every image); train it longer, or pass --m1-units all"
        )
    return keep


M2 = register(
    SemiSupervisedRecipe(
        "m2",
        "semi-supervised M2 (Kingma et al. 2014): the class is a latent variable",
        M2Options,
        stacked=False,
    )
)
M1M2 = register(
    SemiSupervisedRecipe(
        "m1m2",
        "semi-supervised M1+M2 (Kingma et al. 2014): M2 on an m1 run's latent features",
        M1M2Options,
        stacked=True,
    )
)
