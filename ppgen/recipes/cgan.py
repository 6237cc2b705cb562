"""``cgan``: a class-conditional GAN (Mirza & Osindero 2014) on labelled images.

The generator draws ``x`` given the observed label ``y``; the critic scores ``(x, y)`` pairs
(``Adversarial(..., conditions=("y",))``). Everything but the data, the networks and the
evaluation is the ``gan`` recipe's (:mod:`ppgen.recipes.likelihood_free`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import plots
from ppgen.recipes.base import Backend, FitData, image_splits, image_stand_in, refuse_stand_in
from ppgen.recipes.likelihood_free import (
    IMAGE_DATASETS,
    VALID_SAMPLES,
    GANRecipe,
    dataset_classifier,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["CGANRecipe"]


class CGANRecipe(GANRecipe):
    """``cgan``: a class-conditional GAN (Mirza & Osindero 2014) on labelled images: ``y``
    observed in the generator, the critic scoring ``(x, y)`` pairs."""

    name = "cgan"
    help = "class-conditional GAN: y observed in the generator, the critic scores (x, y)"
    description = (
        "A class-conditional GAN (Mirza & Osindero 2014): the generator draws x given the "
        "observed label y, the critic scores (x, y) pairs; evaluated by FID and by how often "
        "the dataset classifier agrees with the label asked for."
    )
    datasets = IMAGE_DATASETS
    defaults = {"dataset": "mnist", "lr": 2e-4, "batch_size": 64, "epochs": 20}
    eval_report = (
        "FID and KID of 10,000 samples drawn for the test set's labels, and label accuracy: "
        "how often the dataset classifier predicts the label each sample was drawn for"
    )

    def prepare(self, config: RunConfig) -> FitData:
        splits = image_splits(config.dataset, config.train_split, "none", config.seed)

        def pair(d: Any) -> Any:
            return None if d is None else (d.x, d.y.astype(np.int64))

        return FitData(
            train=pair(splits.train), valid=pair(splits.valid), test=pair(splits.test),
            num_data=len(splits.train), image_shape=splits.test.image_shape,
            num_classes=splits.test.num_classes,
        )  # fmt: skip

    def shapes(self, config: RunConfig) -> FitData | None:
        stand = image_stand_in(config)
        y = np.arange(len(stand.train)) % stand.num_classes
        return dataclasses.replace(stand, train=(stand.train, y))

    def schedule(self, data: FitData) -> Any:
        from ppgen.data.schedules import Minibatches

        # y passed as integer class labels, checked against the classes over the whole data
        return Minibatches(labels=(1,), num_classes=data.num_classes)

    def generator(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, z_dim = o.resolved(config.dataset)
        return backend.models.Generator(
            (data.x_dim,), z_dim=z_dim, architecture=arch,
            hidden=o.channels if arch == "dcgan" else o.hidden,
            num_classes=data.num_classes, output="sigmoid", seed=config.seed,
        )  # fmt: skip

    def critic(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, _ = o.resolved(config.dataset)
        if arch == "dcgan":
            return backend.models.DCGANCritic((data.x_dim,), channels=o.channels[1],
                                              num_classes=data.num_classes,
                                              seed=config.seed + 1)  # fmt: skip
        return backend.models.MLPCritic(
            data.x_dim, hidden=o.hidden, num_classes=data.num_classes, seed=config.seed + 1
        )

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.Adversarial(
            self.critic(config, data, backend), loss=o.loss, gradient_penalty=o.penalty,
            n_critic=o.n_critic, conditions=("y",),
        )  # fmt: skip

    def _valid_metric(self, config: RunConfig):
        """FID of 2,000 samples drawn for the validation labels, and label accuracy."""

        def metric(samples: np.ndarray, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
            from ppgen.classifier import image_sample_metrics

            n = min(len(x), VALID_SAMPLES["images"])
            classifier = dataset_classifier()
            out = image_sample_metrics(samples[:n], x[:n], classifier, kid_subsets=10,
                                       kid_subset_size=min(n, 500))  # fmt: skip
            hits = classifier.predict_proba(samples[:n]).argmax(-1) == y[:n]
            return {"loss": out["fid"], "fid": out["fid"], "label_accuracy": float(hits.mean())}

        return metric

    def evaluate(self, run: Run, *, limit: int | None = None, **_: Any) -> dict[str, Any]:
        """FID, KID and classes of 10,000 samples drawn for the test labels (``limit``: the
        first ``limit``), and the label accuracy of the dataset classifier on them."""
        from ppgen.classifier import check_fid_count, image_sample_metrics, load_classifier

        refuse_stand_in(run, "evaluating")
        t0 = time.perf_counter()
        x, y = run.data.test
        n = len(x) if limit is None else min(len(x), limit)
        classifier = load_classifier()
        check_fid_count(n, classifier, "--limit")  # before drawing the samples
        samples = np.asarray(run.backend.inference.draw(run.model.sample, n, seed=run.config.seed,
                                                        y=y[:n]))  # fmt: skip
        out = image_sample_metrics(samples, x[:n], classifier)
        hits = classifier.predict_proba(samples).argmax(-1) == y[:n]
        return {**out, "label_accuracy": float(hits.mean()), "samples": n,
                "epoch": run.epoch + 1, "seconds": time.perf_counter() - t0}  # fmt: skip

    def summary(self, out: dict[str, Any]) -> str:
        return (
            super().summary(out)
            + f"; label accuracy {100 * out['label_accuracy']:.1f}% (the classifier agrees "
            "with the label asked for)"
        )

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """One row per class (``class_samples.png``) and the training curves."""
        refuse_stand_in(run, "drawing the pictures of")
        out_dir = Path(out_dir)
        classes = run.data.num_classes
        y = np.repeat(np.arange(classes), 10)
        samples = np.asarray(run.backend.inference.draw(run.model.sample, len(y), seed=0, y=y))
        grid = plots.save_image_grid(samples, out_dir / "class_samples.png",
                                     run.data.image_shape, ncol=10)  # fmt: skip
        curves = plots.save_training_curves(
            run.directory / "metrics.jsonl", out_dir / "curves.png", keys=self.curve_keys(
                run.config), right_keys=("valid_fid",), right_label="validation FID",
            unit=self.loss_unit(run.config),
        )  # fmt: skip
        return [grid, curves]


CGAN = register(CGANRecipe())
