"""The VAE family: ``vae`` (Kingma & Welling 2014), ``hvae`` (two stochastic layers, Burda
et al. 2015) and ``m1`` (Kingma et al. 2014: a VAE whose posterior means feed a classifier).

All three fit binarized images with a Bernoulli likelihood by the ELBO or the IWAE bound.
``vae`` and ``hvae`` are evaluated by the importance-sampled test NLL (Burda et al. 2015,
k = 5000); ``m1`` by the test error of a scikit-learn classifier on its latent features,
fitted on the labelled examples and chosen on validation at evaluation time.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.metrics import summarize_nll
from ppgen.models.conventions import ACTIVATION_NAMES, POSTERIOR_FLOWS, PRIOR_FLOWS
from ppgen.recipes.base import (
    Backend,
    Built,
    FitData,
    Options,
    Recipe,
    image_splits,
    image_stand_in,
    layer_sizes,
    non_negative_int,
    option,
    positive_int,
    trainer_settings,
)
from ppgen.recipes.registry import register
from ppgen.semisupervised import (
    fit_m1_classifier,
    save_confusion,
    test_error_result,
    test_error_summary,
)

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["FlowVAEOptions", "M1Options", "VAEOptions", "encode_posteriors", "m1_features"]

EVAL_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class VAEOptions(Options):
    """Settings of ``vae`` and ``hvae`` (the defaults: Burda et al. 2015's MNIST networks)."""

    binarize: str = option(
        "dynamic",
        "dynamic: fresh Bernoulli pixels every step (default); static: drawn once",
        choices=("dynamic", "static", "none"),
    )
    objective: str = option("elbo", "the training bound", choices=("elbo", "iwae"))
    k: int = option(1, "particles: samples per example for the ELBO or the IWAE bound",
                    parse=positive_int)  # fmt: skip
    analytic_kl: bool = option(False, "closed-form KL in the ELBO (needs --objective elbo)")
    kl_warmup: int = option(
        0,
        "anneal the ELBO's KL weight linearly from 0 to 1 over EPOCHS (needs --objective "
        "elbo; 0: no annealing)",
        parse=non_negative_int,
        metavar="EPOCHS",
    )
    latent: int = option(50, "dimension of z (hvae: of z2; z1 has twice as many)",
                         parse=positive_int)  # fmt: skip
    hidden: tuple[int, ...] = option(
        (200, 200), "hidden layer widths, e.g. 200,200", parse=layer_sizes
    )
    activation: str = option("tanh", "hidden activation", choices=ACTIVATION_NAMES)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.binarize == "none":
            raise ConfigError(
                "this model scores pixels with a Bernoulli likelihood, which needs binary "
                "pixels: use --binarize dynamic (fresh draws every epoch) or static "
                "(grey values are for m2)"
            )
        if self.kl_warmup and self.objective != "elbo":
            raise ConfigError("--kl-warmup anneals the ELBO's KL term; it needs --objective elbo")
        if self.analytic_kl and self.objective != "elbo":
            raise ConfigError("--analytic-kl is a form of the ELBO; it needs --objective elbo")


@dataclass(frozen=True)
class FlowVAEOptions(VAEOptions):
    """Settings of ``vae``: :class:`VAEOptions` and normalizing flows on the posterior
    (Kingma et al. 2016's IAF, Rezende & Mohamed 2015's planar flow, a spline IAF) and the
    prior. The defaults (no flows) are the plain VAE, so runs made before flows load as
    they were."""

    posterior_flow: str = option(
        "none",
        "flow on q(z|x), conditioned on the encoder: iaf, planar or nsf (spline IAF); "
        "none: the Gaussian posterior",
        choices=POSTERIOR_FLOWS,
    )
    prior_flow: str = option(
        "none",
        "flow on p(z): maf, realnvp or nsf (spline MAF); none: N(0, I)",
        choices=PRIOR_FLOWS,
    )
    flow_layers: int = option(2, "layers K of each flow", parse=positive_int, metavar="K")
    flow_hidden: tuple[int, ...] = option(
        (200, 200),
        "hidden widths of each flow layer's conditioner, e.g. 200,200",
        parse=layer_sizes,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.analytic_kl and (self.posterior_flow != "none" or self.prior_flow != "none"):
            raise ConfigError(
                "--analytic-kl needs a closed-form KL, which a flow posterior or prior has "
                "not; drop --analytic-kl (the ELBO then uses the Monte Carlo KL)"
            )
        fields = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [
            "--" + name.replace("_", "-")
            for name in ("flow_layers", "flow_hidden")
            if getattr(self, name) != fields[name]
        ]
        if changed and not self.has_flow:
            raise ConfigError(
                f"{' and '.join(changed)} set the flows of --posterior-flow or --prior-flow; "
                "choose a flow, or drop them"
            )

    @property
    def has_flow(self) -> bool:
        """Whether the posterior or the prior is a flow (else the plain VAE)."""
        return self.posterior_flow != "none" or self.prior_flow != "none"


@dataclass(frozen=True)
class M1Options(VAEOptions):
    """Settings of ``m1``: Kingma et al. 2014's M1 (600-600 softplus, z = 50)."""

    hidden: tuple[int, ...] = option(
        (600, 600), "hidden layer widths, e.g. 600,600", parse=layer_sizes
    )
    activation: str = option("softplus", "hidden activation", choices=ACTIVATION_NAMES)
    labels: int = option(
        100,
        "labelled training examples for the classifier (class-balanced, drawn by --seed; a "
        "multiple of the number of classes, 10)",
        parse=positive_int,
    )


def _linear_warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps)


def build_vae(
    config: RunConfig, data: FitData, backend: Backend, *, hierarchical: bool = False
) -> Built:
    """A Bernoulli VAE (a FlowVAE where the options ask for a flow, or the two-layer
    HierarchicalVAE), its bound and its trainer."""
    o = config.options
    if hierarchical:
        half = tuple(max(1, h // 2) for h in o.hidden)
        model = backend.models.HierarchicalVAE(
            data.x_dim,
            latents=(2 * o.latent, o.latent),
            hidden=(o.hidden, half),
            activation=o.activation,
            seed=config.seed,
        )
    else:
        flows = {}
        if getattr(o, "has_flow", False):  # m1's options have no flows
            flows = dict(
                posterior_flow=o.posterior_flow,
                prior_flow=o.prior_flow,
                flow_layers=o.flow_layers,
                flow_hidden=o.flow_hidden,
            )
        model = (backend.models.FlowVAE if flows else backend.models.VAE)(
            data.x_dim,
            latent=o.latent,
            hidden=o.hidden,
            activation=o.activation,
            likelihood="bernoulli",
            seed=config.seed,
            **flows,
        )
    inference = backend.inference
    if o.objective == "elbo":
        objective = inference.ELBO(num_particles=o.k, analytic_kl=o.analytic_kl)
    else:
        objective = inference.IWAE(num_particles=o.k)
    steps_per_epoch = max(1, data.num_data // config.batch_size)
    beta_schedule = None
    if o.kl_warmup:
        # KL annealing (Bowman et al. 2016): beta rises linearly from 0 to 1.
        beta_schedule = functools.partial(
            _linear_warmup, warmup_steps=o.kl_warmup * steps_per_epoch
        )
    trainer = inference.Trainer(
        model.model,
        model.guide,
        objective,
        num_data=data.num_data,
        transform=inference.DynamicBinarization() if o.binarize == "dynamic" else None,
        beta_schedule=beta_schedule,
        **trainer_settings(config, steps_per_epoch),
    )
    return Built(model, objective, trainer)


def _images(config: RunConfig) -> FitData:
    splits = image_splits(config.dataset, config.train_split, config.options.binarize, config.seed)
    return FitData(
        train=splits.train.x,
        valid=None if splits.valid is None else splits.valid.x,
        test=splits.test.x,
        num_data=len(splits.train),
        image_shape=splits.test.image_shape,
        num_classes=splits.test.num_classes,
    )


def samples_and_reconstructions(run: Run, out_dir: Path, n: int = 64) -> list[Path]:
    """``samples.png`` (``n`` draws of the model) and ``reconstructions.png`` (the first
    ``n`` test images over their reconstructions) of an image model in ``out_dir``."""
    x = run.data.test[:n]
    recon = run.backend.inference.draw(run.model.reconstruct, x, seed=0)
    return [
        plots.save_image_grid(
            run.recipe.sample(run, n), out_dir / "prior_samples.png", run.data.image_shape
        ),
        plots.save_reconstructions(x, recon, out_dir / "reconstructions.png", run.data.image_shape),
    ]


class VAERecipe(Recipe):
    """``vae`` and ``hvae``: evaluated by the importance-sampled test NLL."""

    options = VAEOptions
    defaults = {"lr": 1e-3}
    datasets = ppdata.IMAGE_DATASETS
    eval_flags = ("k", "limit", "batch_size")
    eval_report = (
        "the importance-sampled test NLL (--k samples per example) in nats and bits/dim, "
        "and the test ELBO"
    )

    def __init__(self, name: str, help: str, *, hierarchical: bool) -> None:
        self.name, self.help, self.description = name, help, __doc__.split("\n\n")[0]
        self.hierarchical = hierarchical
        # flows on the posterior and prior are options of the one-layer VAE only
        self.options = VAEOptions if hierarchical else FlowVAEOptions

    def prepare(self, config: RunConfig) -> FitData:
        return _images(config)

    def shapes(self, config: RunConfig) -> FitData:
        """Placeholder images (zeros, float32 ``(2, H * W)``), the dataset's image shape
        and classes (:data:`IMAGE_SHAPES`)."""
        return image_stand_in(config)

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        return build_vae(config, data, backend, hierarchical=self.hierarchical)

    def evaluate(
        self,
        run: Run,
        *,
        k: int = 5000,
        limit: int | None = None,
        batch_size: int = 100,
        progress: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        """Test ELBO and the importance-sampled test NLL with ``k`` samples (nats, bits/dim)."""
        x = run.data.test[:limit]
        t0 = time.perf_counter()
        elbo = float(run.trainer.evaluate(run.state, x)["elbo"])
        log_px = run.backend.inference.draw(
            run.backend.inference.evaluate_log_likelihood,
            run.model.model,
            run.model.guide,
            x,
            seed=run.config.seed,
            num_samples=k,
            batch_size=batch_size,
            chunk_size=min(500, k),
            progress=progress,
        )
        summary = summarize_nll(np.asarray(log_px), x.shape[1])
        return {
            "test_nll": summary["nll"],
            "test_nll_stderr": summary["nll_stderr"],
            "test_bits_per_dim": summary["bits_per_dim"],
            "test_elbo": elbo,
            "k": k,
            "n": summary["n"],
            "epoch": run.epoch + 1,
            "seconds": time.perf_counter() - t0,
        }

    def summary(self, out: dict[str, Any]) -> str:
        return (
            f"test NLL {out['test_nll']:.2f} ± {out['test_nll_stderr']:.2f} nats "
            f"({out['test_bits_per_dim']:.4f} bits/dim), test ELBO {out['test_elbo']:.2f} "
            f"nats; k={out['k']}, {out['n']} examples, epoch {out['epoch']}, "
            f"{out['seconds']:.0f} s"
        )

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        return np.asarray(run.backend.inference.draw(run.model.sample, n, seed=seed))

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        return [
            *samples_and_reconstructions(run, out_dir),
            plots.save_training_curves(out_dir / "metrics.jsonl", out_dir / "curves.png"),
        ]


def encode_posteriors(
    run: Run, x: np.ndarray, batch_size: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Means and standard deviations of ``q(z | x)`` of a trained VAE run (either backend),
    two float32 arrays ``(N, latent)``."""
    locs, scales = [], []
    for start in range(0, len(x), batch_size):
        xb = np.asarray(x[start : start + batch_size], dtype=np.float32)
        loc, scale = run.backend.inference.compute(run.model.encode, xb)
        locs.append(np.asarray(loc))
        scales.append(np.asarray(scale))
    return np.concatenate(locs).astype(np.float32), np.concatenate(scales).astype(np.float32)


@dataclass(frozen=True)
class Features:
    """M1's latent features of one split: posterior means ``x``, standard deviations
    ``scale`` (both ``(N, latent)``) and the labels ``y``."""

    x: np.ndarray
    scale: np.ndarray
    y: np.ndarray


def m1_features(m1: Run) -> dict[str, Features]:
    """The posterior means and standard deviations of a trained M1 (VAE) run on the
    grey-valued train, validation and test images, by split name."""
    out = {}
    for split in EVAL_SPLITS:
        d = ppdata.load_dataset(m1.config.dataset, split, binarize="none")
        loc, scale = encode_posteriors(m1, d.x)
        out[split] = Features(loc, scale, d.y)
    return out


class M1Recipe(Recipe):
    """``m1``: a VAE on every image; evaluated by a classifier on its features."""

    name = "m1"
    help = "semi-supervised M1 (Kingma et al. 2014): a VAE whose features feed a classifier"
    description = help
    options = M1Options
    eval_report = "the test classification error of a classifier on the VAE's features"
    defaults = {"lr": 1e-3}
    datasets = ppdata.IMAGE_DATASETS

    def prepare(self, config: RunConfig) -> FitData:
        return _images(config)

    def shapes(self, config: RunConfig) -> FitData:
        """As the VAE's (:meth:`VAERecipe.shapes`)."""
        return image_stand_in(config)

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        return build_vae(config, data, backend)

    def evaluate(self, run: Run, **_: Any) -> dict[str, Any]:
        """Test error of the classifier (logistic regression or an RBF SVM, chosen on
        validation) trained on the features of the labelled examples."""
        started = time.perf_counter()
        config, num_classes = run.config, run.data.num_classes
        f = m1_features(run)
        y = ppdata.partial_labels(
            f["train"].y, config.options.labels, num_classes=num_classes, seed=config.seed
        )
        clf, extra = fit_m1_classifier(
            f["train"].x, y, f["valid"].x, f["valid"].y, seed=config.seed
        )
        extra.pop("candidates")
        return test_error_result(
            f["test"].y,
            clf.predict(f["test"].x),
            num_classes=num_classes,
            labels=config.options.labels,
            epoch=run.epoch + 1,
            started=started,
            **extra,
        )

    def summary(self, out: dict[str, Any]) -> str:
        return test_error_summary(self.name, out)

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        return np.asarray(run.backend.inference.draw(run.model.sample, n, seed=seed))

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        return [
            save_confusion(self.name, self.evaluate(run), out_dir / "confusion.png"),
            plots.save_training_curves(
                out_dir / "metrics.jsonl", out_dir / "curves.png", keys=("loss",)
            ),
            plots.save_image_grid(
                self.sample(run, 64), out_dir / "prior_samples.png", run.data.image_shape
            ),
        ]


VAE = register(
    VAERecipe("vae", "VAE, one stochastic layer (Kingma & Welling 2014)", hierarchical=False)
)
HVAE = register(
    VAERecipe("hvae", "VAE, two stochastic layers (Burda et al. 2015)", hierarchical=True)
)
M1 = register(M1Recipe())
