"""``flowgan``: a normalizing flow fitted by an adversarial loss plus ``lambda`` times its
exact negative log-likelihood (Flow-GAN, Grover, Dhar & Ermon 2018).

The model is the ``flow`` recipe's (``FlowDensity``: ``TransformedDistribution(Normal(0, I),
flow)``; default NICE, the paper's MNIST flow, whose samples and densities are one pass each
way), the objective ``FlowGAN(critic, loss, weight=lambda)``: the critic plays the
adversarial game against the flow's samples, and the flow's player minimises its
adversarial loss plus ``lambda`` times the exact NLL of the data batch. ``--lambda 0`` is
adversarial training alone; ``ppgen train flow`` (maximum likelihood) is the other end.

Data and units are the ``flow`` recipe's: the toy 2-D densities, and images dequantised
(``k + u`` for pixels of ``L`` grey levels, the logit map's Jacobian counted) so that the
NLL is in nats of the ``L``-level data (bits/dim for images). The critic sees the flow's
samples and the data in the same dequantised space, scaled by ``1 / L`` to ``[0, 1]``.

Validation and ``ppgen eval`` report both of the paper's figures: the exact NLL (by default
the validation loss of a hybrid, by which the best epoch is kept) and, on MNIST, FID and KID of
samples with ppgen's dataset classifier (the validation loss of adversarial training alone,
``--lambda 0``, whose likelihood is not what it fits). ``--keep nll|fid`` chooses the figure
that keeps the checkpoint whatever lambda is: a hybrid fitted for its samples is kept by
FID.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.inference.games import ADVERSARIAL_LOSSES, check_weight
from ppgen.recipes.base import (
    Backend,
    Built,
    FitData,
    layer_sizes,
    non_negative_float,
    option,
    positive_int,
)
from ppgen.recipes.flow import FLOW_CHOICES, FlowOptions, FlowRecipe, grey_levels
from ppgen.recipes.likelihood_free import (
    EVAL_SAMPLES,
    VALID_SAMPLES,
    CriticOptions,
    dataset_classifier,
    is_images,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["FlowGANOptions", "FlowGANRecipe"]


@dataclass(frozen=True)
class FlowGANOptions(FlowOptions, CriticOptions):
    """Settings of ``flowgan``: the flow's (``flow``), the game's (``gan``: loss, critic
    updates, Adam), the likelihood's weight ``lambda`` and the critic's size."""

    flow: str = option("nice", "the flow (NICE: the paper's MNIST flow)", choices=FLOW_CHOICES)
    loss: str = option(
        "wgan-gp", "the adversarial loss (the paper's is a Wasserstein GAN)",
        choices=ADVERSARIAL_LOSSES,
    )  # fmt: skip
    n_critic: int = option(5, "critic updates per flow update (WGAN-GP: 5)", parse=positive_int)
    likelihood_weight: float = option(
        1.0, "lambda, the weight of the exact NLL (nats per example) in the flow's loss; 0: "
        "adversarial training alone", flag="--lambda", parse=non_negative_float, metavar="LAMBDA",
    )  # fmt: skip
    critic: str = option(
        "mlp", "the critic: an MLP on the flattened data, or DCGAN-style convolutions (28x28 "
        "images; about 40 times slower a step on a CPU)", choices=("mlp", "dcgan"),
    )  # fmt: skip
    critic_hidden: tuple[int, ...] = option(
        (256, 256), "hidden widths of the MLP critic", parse=layer_sizes
    )
    critic_channels: int = option(
        64, "channels of the DCGAN critic's first convolution", parse=positive_int
    )
    keep: str = option(
        "auto", "the validation figure that picks the checkpoint kept: nll, fid (MNIST: FID of "
        "2,000 samples), or auto: nll when lambda > 0, else fid on MNIST",
        choices=("auto", "nll", "fid"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_weight(self.likelihood_weight, "--lambda")

    def check_data(self, dataset: str) -> None:
        """Raises ConfigError: the DCGAN critic on data that are not 28x28 images, or
        ``--keep fid`` on data that are not MNIST."""
        if self.critic == "dcgan" and not is_images(dataset):
            raise ConfigError(
                f"--critic dcgan scores 28x28 images; {dataset!r} is not MNIST: use --critic mlp"
            )
        if self.keep == "fid" and not is_images(dataset):
            raise ConfigError(
                f"--keep fid needs MNIST (FID with ppgen's MNIST classifier); {dataset!r} is "
                "not MNIST: use --keep nll"
            )

    def kept_by(self, dataset: str) -> str:
        """``"nll"`` or ``"fid"``: the validation figure that picks the checkpoint kept."""
        if self.keep != "auto":
            return self.keep
        return "nll" if self.likelihood_weight > 0 or not is_images(dataset) else "fid"


class FlowGANRecipe(FlowRecipe):
    """``flowgan``: a flow against a critic, plus ``lambda`` times its exact NLL."""

    name = "flowgan"
    help = "Flow-GAN: a flow fitted adversarially plus lambda times its exact NLL"
    description = (
        "A normalizing flow fitted by an adversarial loss against a critic plus lambda times "
        "its exact negative log-likelihood (Grover et al. 2018); --lambda 0 is adversarial "
        "training alone. Reports the exact test NLL and, on MNIST, FID."
    )
    options = FlowGANOptions
    defaults = {"lr": 1e-4, "dataset": "moons", "batch_size": 100}
    eval_report = (
        "the exact test NLL in nats per example (bits/dim for images), and on MNIST FID, KID "
        "and classes covered of 10,000 samples against the test set"
    )

    def critic(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        """The critic (``--critic``), seeing images as ``(k + u) / L``."""
        o = config.options
        o.check_data(config.dataset)
        levels = grey_levels(config.dataset)
        scale = 1.0 if levels is None else 1.0 / levels
        if o.critic == "dcgan":
            return backend.models.DCGANCritic(
                (data.x_dim,), channels=o.critic_channels, seed=config.seed + 1,
                input_scale=scale,
            )  # fmt: skip
        return backend.models.MLPCritic(
            data.x_dim, hidden=o.critic_hidden, seed=config.seed + 1, input_scale=scale
        )

    def epoch_loop(self, config: RunConfig) -> str:
        """``"steps"`` with the DCGAN critic (convolutions, see Recipe.epoch_loop), else the
        flow's."""
        if config.options.critic == "dcgan":
            return "steps"
        return super().epoch_loop(config)

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        o = config.options
        model, transform = self.density(config, data, backend)  # the flow recipe's
        objective = backend.inference.FlowGAN(
            self.critic(config, data, backend), loss=o.loss, weight=o.likelihood_weight,
            gradient_penalty=o.penalty, n_critic=o.n_critic,
        )  # fmt: skip
        steps = max(1, data.num_data // config.batch_size)
        trainer = backend.inference.Trainer(
            model.model,
            model.guide,
            objective,
            num_data=data.num_data,
            batch_size=config.batch_size,
            devices=config.devices,
            epoch_loop=self.epoch_loop(config),
            transform=transform,
            evaluator=_NLLAndSamples(
                self._sample_evaluator(config, backend),
                nll_is_loss=o.kept_by(config.dataset) == "nll",
            ),
            **o.player_groups(config, steps),
        )
        return Built(model, objective, trainer)

    def _sample_evaluator(self, config: RunConfig, backend: Backend) -> Any:
        """FID of 2,000 samples on MNIST (``None`` elsewhere: the NLL alone)."""
        if not is_images(config.dataset):
            return None
        levels = grey_levels(config.dataset)

        def metric(samples: np.ndarray, x: np.ndarray, *_: np.ndarray) -> dict[str, float]:
            from ppgen.classifier import image_sample_metrics

            n = min(len(x), VALID_SAMPLES["images"])
            images = np.clip(samples[:n] / levels, 0.0, 1.0)
            data = np.clip(x[:n] / levels, 0.0, 1.0)
            out = image_sample_metrics(images, data, dataset_classifier(), kid_subsets=10,
                                       kid_subset_size=min(n, 500))  # fmt: skip
            return {"fid": out["fid"], "classes": out["classes"]}

        return backend.inference.SampleEvaluator(metric)

    def loss_unit(self, config: RunConfig) -> str:
        return "per example"

    def evaluate(
        self, run: Run, *, limit: int | None = None, batch_size: int = 1000,
        progress: bool = True, **options: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """The flow's exact test NLL (as ``flow``'s evaluation) and, on MNIST, FID, KID and
        classes covered of 10,000 samples (``limit``: that many) against the test set."""
        out = super().evaluate(run, limit=limit, batch_size=batch_size, progress=progress)
        if is_images(run.config.dataset):
            from ppgen.classifier import check_fid_count, image_sample_metrics, load_classifier

            t0 = time.perf_counter()
            n = EVAL_SAMPLES["images"] if limit is None else min(EVAL_SAMPLES["images"], limit)
            classifier = load_classifier()
            check_fid_count(n, classifier, "--limit")
            samples = self.sample(run, n, seed=run.config.seed)
            levels = grey_levels(run.config.dataset)
            test = np.clip(run.data.test[: max(n, 10_000)] / levels, 0.0, 1.0)
            quality = image_sample_metrics(samples, test, classifier)
            out.update({k: quality[k] for k in ("fid", "kid", "kid_std", "classes")})
            out["samples"] = n
            out["seconds"] += time.perf_counter() - t0
        return out

    def summary(self, out: dict[str, Any]) -> str:
        text = super().summary(out)
        if "fid" in out:
            text += (
                f"; FID {out['fid']:.2f}, KID {out['kid']:.4f} ± {out['kid_std']:.4f}, "
                f"{out['classes']}/10 classes ({out['samples']} samples)"
            )
        return text

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """The flow's pictures, with the training curves of both players and the validation
        NLL (and FID on MNIST)."""
        paths = super().pictures(run, out_dir)
        curves = Path(out_dir) / "curves.png"
        images = is_images(run.config.dataset)
        # 2-D data: the training NLL term (logged beside the losses when lambda > 0) with the
        # validation NLL; images: FID (the NLL in thousands of nats is in metrics.jsonl)
        right = ("valid_fid",) if images else ("nll", "valid_nll")
        plots.save_training_curves(
            run.directory / "metrics.jsonl", curves, keys=("loss_critic", "loss_generator"),
            right_keys=right, unit="per example",
            right_label="validation FID" if images else "NLL (nats per example)",
        )  # fmt: skip
        return paths


class _NLLAndSamples:
    """The validation of ``flowgan``: the exact NLL per example (``"nll"``, nats) of the
    validation data, and a sample metric (FID) where one is given; ``"loss"`` is the NLL when
    ``nll_is_loss`` (``--keep``, by default: the likelihood is part of the objective), else
    the sample metric's FID (without one, the NLL either way)."""

    def __init__(self, samples: Any, *, nll_is_loss: bool) -> None:
        self.samples, self.nll_is_loss = samples, nll_is_loss

    def __call__(self, trainer: Any, state: Any, data: Any, **_: Any) -> dict[str, float]:
        nll = -float(trainer.evaluate_bound(state, data)["elbo"])
        out = {"nll": nll, "loss": nll}
        if self.samples is not None:
            out.update(self.samples(trainer, state, data))
            if not self.nll_is_loss:
                out["loss"] = out["fid"]
        return out


FLOWGAN = register(FlowGANRecipe())
