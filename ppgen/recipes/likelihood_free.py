"""The likelihood-free family: a generator program fitted without its density.

``ppgen train gan --loss NAME`` fits a generator (``ppgen.models.{pyro,numpyro}.Generator``:
``z ~ N(0, I)``, ``x = G(z)``) against a critic network with an adversarial loss
(``Adversarial``: non-saturating and minimax GAN, least squares, hinge, WGAN-GP, f-GANs),
two players with their own Adam optimisers and ``--n-critic`` critic updates per generator
update; ``ppgen train mmd`` by the unbiased MMD^2 between a batch of samples and a data
batch (generative moment matching); ``ppgen train sinkhorn`` by the debiased Sinkhorn
divergence (ott-jax on NumPyro, POT on Pyro).

Data: the mode-collapse toy sets ``ring8`` and ``grid25`` (VEEGAN, PacGAN), on which the
validation and ``ppgen eval`` report the modes covered and the share of high-quality
samples (within three standard deviations of a mode), and grey-scale MNIST in [0, 1], on
which they report FID and KID with ppgen's dataset classifier (``ppgen.classifier``: trained
once into the data directory), the classes covered and the inception-score analogue.
Architectures: ``mlp`` (the 2-D sets' default) or ``dcgan`` (the images' default; no batch
normalisation, as WGAN-GP's critic needs).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.inference.games import ADVERSARIAL_LOSSES, MMD_KERNELS, adversarial_groups
from ppgen.recipes.base import (
    Backend,
    Built,
    FitData,
    Options,
    Recipe,
    image_splits,
    image_stand_in,
    layer_sizes,
    non_negative_float,
    non_negative_int,
    option,
    positive,
    positive_int,
    refuse_stand_in,
    stand_in,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "CriticOptions",
    "GANOptions",
    "GANRecipe",
    "GeneratorOptions",
    "MMDOptions",
    "MMDRecipe",
    "SinkhornOptions",
    "SampleProgress",
    "SinkhornRecipe",
    "dataset_classifier",
    "is_images",
    "modes_picture",
]

MODE_DATASETS = ("ring8", "grid25")
IMAGE_DATASETS = ("mnist",)
ARCHITECTURES = ("auto", "mlp", "dcgan")
#: Samples drawn by ``ppgen eval``: PacGAN's 2,500 on the 2-D sets, FID's usual 10,000.
EVAL_SAMPLES = {"modes": 2500, "images": 10_000}
#: Samples of each validation during training (the FID of fewer is biased upwards, so the
#: validation figure is for choosing the best epoch, not for reporting).
VALID_SAMPLES = {"modes": 2500, "images": 2000}


def is_images(dataset: str) -> bool:
    """Whether ``dataset`` holds 28x28 images (else 2-D points of a mode-collapse set)."""
    return dataset in IMAGE_DATASETS


@dataclass(frozen=True)
class GeneratorOptions(Options):
    """The generator's settings, shared by ``gan``, ``mmd`` and ``sinkhorn``."""

    architecture: str = option(
        "auto", "generator (and critic) networks: mlp, dcgan (28x28 images), or auto: mlp "
        "on 2-D data, dcgan on images", choices=ARCHITECTURES,
    )  # fmt: skip
    z_dim: int = option(0, "width of z (0: 2 on 2-D data, 64 on images)", parse=non_negative_int)
    hidden: tuple[int, ...] = option(
        (128, 128, 128), "mlp: hidden widths of the generator (and critic), e.g. 128,128,128",
        parse=layer_sizes,
    )  # fmt: skip
    channels: tuple[int, ...] = option(
        (128, 64), "dcgan: the generator's channels on the 7x7 and 14x14 maps; the critic's "
        "first conv has the second", parse=layer_sizes,
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) != 2:
            raise ConfigError(
                f"--channels takes two widths (7x7 and 14x14 maps), got {self.channels}"
            )

    def resolved(self, dataset: str) -> tuple[str, int]:
        """``(architecture, z_dim)`` with ``auto`` and 0 filled in for ``dataset``.

        Raises:
            ConfigError: ``dcgan`` on data that are not 28x28 images.
        """
        images = is_images(dataset)
        arch = self.architecture if self.architecture != "auto" else ("dcgan" if images else "mlp")
        if arch == "dcgan" and not images:
            raise ConfigError(
                f"--architecture dcgan draws 28x28 images; {dataset!r} holds 2-D points: use "
                "--architecture mlp"
            )
        return arch, self.z_dim or (64 if images else 2)


@dataclass(frozen=True)
class CriticOptions(Options):
    """The adversarial game's settings, shared by every recipe with a critic (``gan``,
    ``cgan``, ``flowgan``, ...; defaults: WGAN-GP's Adam betas (0.5, 0.9))."""

    loss: str = option("nonsaturating", "the adversarial loss", choices=ADVERSARIAL_LOSSES)
    n_critic: int = option(1, "critic updates per generator update (WGAN-GP: 5)",
                           parse=positive_int)  # fmt: skip
    gradient_penalty: float = option(
        -1.0, "weight lambda of the critic's gradient penalty (-1: 10 for wgan-gp, 0 else)",
    )  # fmt: skip
    lr_critic: float = option(
        0.0, "the critic's learning rate (0: the same as --lr, the generator's)",
        parse=non_negative_float,
    )  # fmt: skip
    beta1: float = option(0.5, "Adam's beta1 of both players (DCGAN, WGAN-GP: 0.5)")
    beta2: float = option(0.9, "Adam's beta2 of both players (WGAN-GP: 0.9)")
    ema: float = option(
        0.0, "decay of an exponential moving average of the generator's weights, which "
        "validation, samples and the checkpoint kept use (Yazici et al. 2019), e.g. 0.999; "
        "0: none", parse=non_negative_float,
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.ema < 1:
            raise ConfigError(f"--ema must be a decay in [0, 1) (0: none), got {self.ema}")
        if self.gradient_penalty < 0 and self.gradient_penalty != -1:
            raise ConfigError(
                f"--gradient-penalty must be >= 0 (or -1: the loss's default), got "
                f"{self.gradient_penalty}"
            )
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def penalty(self) -> float | None:
        """The objective's ``gradient_penalty`` (``None``: the loss's default)."""
        return None if self.gradient_penalty == -1 else self.gradient_penalty

    def player_groups(self, config: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
        """The trainer's two parameter groups (``groups=``), each player with its own Adam.

        Raises:
            ConfigError: A ``--weight-decay`` (not offered to the players).
        """
        if config.weight_decay:
            raise ConfigError(
                f"{config.model} takes no --weight-decay (each player has its own Adam)"
            )
        return {
            "groups": adversarial_groups(
                lr_critic=self.lr_critic or config.lr, lr_generator=config.lr,
                n_critic=self.n_critic, betas=(self.beta1, self.beta2),
                lr_schedule=config.lr_schedule,
                total_steps=config.epochs * steps_per_epoch, ema_generator=self.ema or None,
            )
        }  # fmt: skip


@dataclass(frozen=True)
class GANOptions(GeneratorOptions, CriticOptions):
    """Settings of ``gan`` (defaults: WGAN-GP's Adam, lr 1e-4 with betas (0.5, 0.9))."""


@dataclass(frozen=True)
class MMDOptions(GeneratorOptions):
    """Settings of ``mmd`` (bandwidths: 0 = scaled to the data, see ``bandwidths``)."""

    kernel: str = option("gaussian", "MMD's kernel: a sum of Gaussians or of inverse "
                         "multiquadrics", choices=MMD_KERNELS)  # fmt: skip
    bandwidths: tuple[float, ...] = option(
        (), "the kernel's bandwidths (Gaussian standard deviations, or IMQ scales c), e.g. "
        "0.05,0.2,1; empty: the data's default (2-D sets: 0.05,0.1,0.2,0.5,1,2; images: "
        "2,5,10,20,40,80, Li et al. 2015)", parse=lambda text: tuple(
            positive(float)(v) for v in text.split(",") if v.strip()
        ),
    )  # fmt: skip

    def kernel_bandwidths(self, dataset: str) -> tuple[float, ...]:
        if self.bandwidths:
            return self.bandwidths
        if is_images(dataset):
            return (2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
        return (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def rho_value(text: str) -> float:
    """An argparse type: unbalanced transport's ``rho``, a finite number > 0, 0 (balanced) or
    -1 (the recipe's default)."""
    try:
        if float(text) == -1:
            return -1.0
    except ValueError:
        pass  # non_negative_float says what is wrong
    try:
        return non_negative_float(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error} (or -1: the default)") from None


@dataclass(frozen=True)
class SinkhornOptions(GeneratorOptions):
    """Settings of ``sinkhorn``."""

    epsilon: float = option(0.0, "entropic regularisation epsilon > 0, in the cost's units "
                            "(0: 0.1 on 2-D sets, 10 on images)",
                            parse=non_negative_float)  # fmt: skip
    p: int = option(2, "cost |x - y|_2^p: 1 or 2", parse=int)
    rho: float = option(
        -1.0, "unbalanced transport: the KL penalty rho > 0 on the marginals, in the cost's "
        "units (mass moves up to about rho^(1/p); Sejourne et al. 2019); 0: balanced; -1: 1 on "
        "2-D sets (batches of a mixture never hold the same count in each mode), balanced on "
        "images", parse=rho_value,
    )  # fmt: skip
    max_iterations: int = option(
        1000, "iteration cap of each Sinkhorn solve (three a step; a warning says when it is "
        "reached)", parse=positive_int,
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p not in (1, 2):
            raise ConfigError(f"--p must be 1 or 2 (the cost |x - y|^p), got {self.p}")
        if not (self.rho in (-1, 0) or (self.rho > 0 and math.isfinite(self.rho))):
            raise ConfigError(
                f"--rho must be a finite number > 0, 0 (balanced) or -1 (the default), got "
                f"{self.rho}"
            )

    def regularisation(self, dataset: str) -> float:
        """``epsilon`` for ``dataset`` (``--epsilon 0``: the data kind's default)."""
        if self.epsilon:
            return self.epsilon
        return 10.0 if is_images(dataset) else 0.1

    def marginal_penalty(self, dataset: str) -> float | None:
        """``rho`` for ``dataset``, ``None`` for balanced transport (``--rho -1``: the data
        kind's default)."""
        if self.rho == -1:
            return None if is_images(dataset) else 1.0
        return self.rho or None


class _GeneratorRecipe(Recipe):
    """What ``gan``, ``mmd`` and ``sinkhorn`` share: data, generator, evaluation, pictures."""

    datasets = (*MODE_DATASETS, *IMAGE_DATASETS)
    defaults = {"dataset": "grid25", "lr": 1e-4, "batch_size": 100, "epochs": 20}
    eval_flags = ("limit",)
    eval_report = (
        "2-D sets: modes covered and the share of high-quality samples (2,500 samples); "
        "images: FID and KID with the dataset classifier, classes covered (10,000 samples "
        "against the test set)"
    )

    # -- data ---------------------------------------------------------------------------

    def prepare(self, config: RunConfig) -> FitData:
        if is_images(config.dataset):
            splits = image_splits(config.dataset, config.train_split, "none", config.seed)
            valid = None if splits.valid is None else splits.valid.x
            return FitData(
                train=splits.train.x, valid=valid, test=splits.test.x,
                num_data=len(splits.train), image_shape=splits.test.image_shape,
            )  # fmt: skip
        train = ppdata.load_dataset(config.dataset, config.train_split)
        valid = None
        if config.train_split == "train":
            valid = ppdata.load_dataset(config.dataset, "valid").x
        test = ppdata.load_dataset(config.dataset, "test").x
        return FitData(train=train.x, valid=valid, test=test, num_data=len(train))

    def shapes(self, config: RunConfig) -> FitData | None:
        """A placeholder batch: the generator's shapes are the data's."""
        if is_images(config.dataset):
            return image_stand_in(config)
        return stand_in(config, np.zeros((2, 2), np.float32))

    def epoch_loop(self, config: RunConfig) -> str:
        arch, _ = config.options.resolved(config.dataset)
        return "steps" if arch == "dcgan" else "scan"

    def loss_unit(self, config: RunConfig) -> str:
        return "per example"

    # -- model --------------------------------------------------------------------------

    def generator(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, z_dim = o.resolved(config.dataset)
        images = is_images(config.dataset)
        return backend.models.Generator(
            (data.x_dim,), z_dim=z_dim, architecture=arch,
            hidden=o.channels if arch == "dcgan" else o.hidden,
            output="sigmoid" if images else "identity", seed=config.seed,
        )  # fmt: skip

    def critic(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, _ = o.resolved(config.dataset)
        if arch == "dcgan":
            return backend.models.DCGANCritic((data.x_dim,), channels=o.channels[1],
                                              seed=config.seed + 1)  # fmt: skip
        return backend.models.MLPCritic(data.x_dim, hidden=o.hidden, seed=config.seed + 1)

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        raise NotImplementedError

    def schedule(self, data: FitData) -> Any:
        """The trainer's batch schedule: plain minibatches of ``x``."""
        from ppgen.data.schedules import Minibatches

        return Minibatches()

    def groups(self, config: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
        """The trainer's optimiser settings (one group by default)."""
        return {
            "lr": config.lr,
            "lr_schedule": config.lr_schedule,
            "weight_decay": config.weight_decay,
            "total_steps": config.epochs * steps_per_epoch,
        }

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        progress = SampleProgress(config.dataset, data.image_shape)
        model = self.generator(config, data, backend)
        objective = self.objective(config, data, backend)
        steps = max(1, data.num_data // config.batch_size)
        trainer = backend.inference.Trainer(
            model.model,
            model.guide,
            objective,
            num_data=data.num_data,
            batch_size=config.batch_size,
            devices=config.devices,
            epoch_loop=self.epoch_loop(config),
            evaluator=backend.inference.SampleEvaluator(progress.watch(self._valid_metric(config))),
            schedule=self.schedule(data),
            **self.groups(config, steps),
        )
        return Built(model, objective, trainer, on_epoch=progress)

    # -- evaluation -----------------------------------------------------------------------

    def _valid_metric(self, config: RunConfig):
        """The validation metric: ``-(modes + high-quality share)`` on the 2-D sets (more
        modes first, then better samples), FID on 2,000 images."""
        dataset = config.dataset

        def metric(samples: np.ndarray, x: np.ndarray, *_: np.ndarray) -> dict[str, float]:
            if is_images(dataset):
                from ppgen.classifier import image_sample_metrics

                n = min(len(x), VALID_SAMPLES["images"])
                out = image_sample_metrics(samples[:n], x[:n], dataset_classifier(), kid_subsets=10,
                                           kid_subset_size=min(n, 500))  # fmt: skip
                return {"loss": out["fid"], "fid": out["fid"], "classes": out["classes"]}
            from ppgen.sample_quality import mode_metrics

            out = mode_metrics(samples[: VALID_SAMPLES["modes"]], dataset)
            return {"loss": -(out["modes"] + out["hq_share"]), "modes": out["modes"],
                    "hq_share": out["hq_share"]}  # fmt: skip

        return metric

    def evaluate(self, run: Run, *, limit: int | None = None, **_: Any) -> dict[str, Any]:
        """Modes covered and high-quality share of 2,500 samples (2-D sets), or FID, KID and
        classes covered of 10,000 samples against the test set (images)."""
        refuse_stand_in(run, "evaluating")
        t0 = time.perf_counter()
        images = is_images(run.config.dataset)
        n = EVAL_SAMPLES["images" if images else "modes"]
        n = n if limit is None else min(n, limit)
        if images:
            from ppgen.classifier import check_fid_count, image_sample_metrics, load_classifier

            classifier = load_classifier()
            check_fid_count(n, classifier, "--limit")  # before drawing the samples
        samples = self.sample(run, n, seed=run.config.seed)
        if images:
            out = image_sample_metrics(samples, run.data.test[: max(n, 10_000)], classifier)
        else:
            from ppgen.sample_quality import mode_metrics

            out = mode_metrics(samples, run.config.dataset)
        return {**out, "samples": n, "epoch": run.epoch + 1,
                "seconds": time.perf_counter() - t0}  # fmt: skip

    def summary(self, out: dict[str, Any]) -> str:
        if "fid" in out:
            return (
                f"FID {out['fid']:.2f}, KID {out['kid']:.4f} ± {out['kid_std']:.4f}, "
                f"{out['classes']}/10 classes, inception score {out['inception_score']:.2f} "
                f"({out['samples']} samples, epoch {out['epoch']}, {out['seconds']:.0f} s)"
            )
        return (
            f"{out['modes']}/{out['num_modes']} modes covered, {100 * out['hq_share']:.1f}% "
            f"high-quality samples ({out['samples']} samples, epoch {out['epoch']})"
        )

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        return np.asarray(run.backend.inference.draw(run.model.sample, n, seed=seed))

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        if is_images(run.config.dataset):
            return super().save_samples(run, samples, path)
        return modes_picture(samples, run.config.dataset, path)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        refuse_stand_in(run, "drawing the pictures of")
        out_dir = Path(out_dir)
        images = is_images(run.config.dataset)
        if images:
            first = plots.save_image_grid(self.sample(run, 64), out_dir / "samples.png",
                                          run.data.image_shape)  # fmt: skip
        else:
            first = modes_picture(self.sample(run, 2500), run.config.dataset,
                                   out_dir / "samples_2d.png")  # fmt: skip
        over_training = SampleProgress.montage(run.directory, out_dir)
        losses = self.curve_keys(run.config)
        right = ("valid_fid",) if images else ("valid_modes",)
        curves = plots.save_training_curves(
            run.directory / "metrics.jsonl", out_dir / "curves.png", keys=losses,
            right_keys=right, right_label="validation FID" if images else "modes covered",
            unit=self.loss_unit(run.config),
        )  # fmt: skip
        return [first, curves, *over_training]

    def curve_keys(self, config: RunConfig) -> tuple[str, ...]:
        return ("loss",)


class SampleProgress:
    """Pictures of a generator's samples over training: the samples of each validation
    (drawn with a fixed seed, so epochs compare like with like) saved by the driver after
    that epoch as ``RUN/progress/samples_epoch_<epoch>.png`` (64 images, or 2,500 points
    over the modes), where mode collapse or steady progress shows; :meth:`montage` puts a
    few of them side by side.

    Args:
        dataset: The run's dataset.
        image_shape: ``(H, W)`` of image data (``None`` for 2-D points).
    """

    DIRECTORY = "progress"

    def __init__(self, dataset: str, image_shape: tuple[int, int] | None) -> None:
        self.dataset, self.image_shape = dataset, image_shape
        self.latest: np.ndarray | None = None

    def watch(self, metric: Any) -> Any:
        """``metric`` that also keeps the samples it scores for the epoch's picture."""

        def watched(samples: np.ndarray, *data: np.ndarray) -> dict[str, float]:
            self.latest = np.asarray(samples[: 64 if is_images(self.dataset) else 2500])
            return metric(samples, *data)

        return watched

    def __call__(self, record: dict, run_dir: Path) -> None:
        """Save the last validation's samples as the picture of ``record``'s epoch."""
        if self.latest is None:
            return
        path = Path(run_dir) / self.DIRECTORY / f"samples_epoch_{record['epoch'] + 1:04d}.png"
        if is_images(self.dataset) and self.image_shape is not None:
            plots.save_image_grid(self.latest, path, self.image_shape)
        else:
            modes_picture(self.latest, self.dataset, path)
        self.latest = None

    @classmethod
    def montage(cls, run_dir: Path, out_dir: Path, count: int = 6) -> list[Path]:
        """``samples_over_training.png``: up to ``count`` of a run's epoch pictures, evenly
        spaced from the first to the last, side by side (none: no picture)."""
        paths = sorted((Path(run_dir) / cls.DIRECTORY).glob("samples_epoch_*.png"))
        if not paths:
            return []
        picks = sorted({round(i) for i in np.linspace(0, len(paths) - 1, min(count, len(paths)))})
        chosen = [paths[i] for i in picks]
        labels = [f"epoch {int(p.stem.rsplit('_', 1)[1])}" for p in chosen]
        return [plots.save_picture_row(chosen, labels, Path(out_dir) / "samples_over_training.png")]


def dataset_classifier() -> Any:
    """The dataset classifier of the validations, read (and its checksum checked) once per
    data directory in a process rather than at every evaluation."""
    from ppgen.classifier import classifier_dir

    return _classifier_in(classifier_dir())


@functools.cache
def _classifier_in(directory: Path) -> Any:
    from ppgen.classifier import load_classifier

    return load_classifier(directory.parent)


def modes_picture(samples: np.ndarray, dataset: str, path: Path) -> Path:
    """2-D ``samples`` ``(n, 2)`` over ``dataset``'s modes, each ringed at three standard
    deviations (the high-quality region), written to ``path``; returns it."""
    from ppgen.data.toy import toy_modes

    centers, std = toy_modes(dataset)
    return plots.save_samples_over_modes(samples, centers, 3 * std, path)


class GANRecipe(_GeneratorRecipe):
    """``gan``: a generator against a critic (two parameter groups)."""

    name = "gan"
    help = "GAN: a generator fitted against a critic (non-saturating, WGAN-GP, hinge, f-GAN, ...)"
    description = (
        "A generator fitted against a critic network by an adversarial loss: the two players "
        "are parameter groups with their own Adam, the critic updated --n-critic times a step."
    )
    options = GANOptions

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.Adversarial(
            self.critic(config, data, backend), loss=o.loss, gradient_penalty=o.penalty,
            n_critic=o.n_critic,
        )  # fmt: skip

    def groups(self, config: RunConfig, steps_per_epoch: int) -> dict[str, Any]:
        return config.options.player_groups(config, steps_per_epoch)

    def loss_unit(self, config: RunConfig) -> str:
        return "per example"

    def curve_keys(self, config: RunConfig) -> tuple[str, ...]:
        return ("loss_critic", "loss_generator")


class MMDRecipe(_GeneratorRecipe):
    """``mmd``: generative moment matching networks (one parameter group)."""

    name = "mmd"
    help = "generative moment matching: a generator fitted by the unbiased MMD^2"
    description = "A generator fitted by the unbiased MMD^2 to the data (Li et al. 2015)."
    options = MMDOptions

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.MMD(o.kernel, o.kernel_bandwidths(config.dataset))

    def loss_unit(self, config: RunConfig) -> str:
        return "MMD^2 of a batch"


class SinkhornRecipe(_GeneratorRecipe):
    """``sinkhorn``: minimum Sinkhorn divergence (one parameter group)."""

    name = "sinkhorn"
    help = "a generator fitted by the debiased Sinkhorn divergence (optimal transport)"
    description = "A generator fitted by the Sinkhorn divergence (Genevay et al. 2018)."
    options = SinkhornOptions

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.Sinkhorn(
            epsilon=o.regularisation(config.dataset), p=o.p,
            rho=o.marginal_penalty(config.dataset), max_iterations=o.max_iterations,
        )  # fmt: skip

    def loss_unit(self, config: RunConfig) -> str:
        return "Sinkhorn divergence of a batch"


GAN = register(GANRecipe())
MMD = register(MMDRecipe())
SINKHORN = register(SinkhornRecipe())
