"""``aae``: the adversarial autoencoder (Makhzani et al. 2015) and its MMD and Sinkhorn
variants (InfoVAE, Zhao et al. 2017; WAE-MMD, Tolstikhin et al. 2018; Sinkhorn autoencoders,
Patrini et al. 2019).

The ``vae`` recipe's model and guide (:mod:`ppgen.recipes.vae`) fitted by the backend's
``AAE`` objective: the reconstruction NLL plus ``--weight`` times a match of the aggregate
posterior ``q(z)`` to the prior ``N(0, I)``, by a critic on ``z`` (``--match adversarial``:
two players with their own Adam, the critic updated ``--n-critic`` times a step), by MMD
(``--match mmd``) or by the Sinkhorn divergence (``--match sinkhorn``).

Data: binarized MNIST (the default) or the 8x8 digits with the VAE's Bernoulli decoder, and
the 2-D mode-collapse sets ``ring8`` and ``grid25`` with a Gaussian decoder (learned scale).
The validation reports the reconstruction NLL (the best checkpoint is its lowest); ``ppgen
eval`` the test reconstruction NLL, the MMD^2 between the test set's posterior draws and prior
draws, and the samples' FID and KID (MNIST) or modes covered (2-D sets).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.inference.games import (
    AAE_MATCH_SETTINGS,
    AAE_MATCHES,
    ADVERSARIAL_LOSSES,
    MMD_KERNELS,
    adversarial_groups,
)
from ppgen.models.conventions import ACTIVATION_NAMES
from ppgen.recipes.base import (
    Backend,
    Built,
    FitData,
    Options,
    layer_sizes,
    non_negative_float,
    non_negative_int,
    option,
    positive,
    positive_int,
    refuse_stand_in,
    stand_in,
    trainer_settings,
)
from ppgen.recipes.likelihood_free import (
    EVAL_SAMPLES,
    MODE_DATASETS,
    modes_picture,
)
from ppgen.recipes.registry import register
from ppgen.recipes.vae import VAERecipe, encode_posteriors, samples_and_reconstructions

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["AAEOptions", "AAERecipe"]

#: Each match's own options: the objective's settings of that match (``AAE_MATCH_SETTINGS``,
#: those the command line offers) and the adversarial critic's network and learning rate.
#: Set for another match, they are refused.
MATCH_OPTIONS = {
    match: names + (("critic_hidden", "lr_critic") if match == "adversarial" else ())
    for match, names in AAE_MATCH_SETTINGS.items()
}
#: Each match's default ``--weight``: on binarized MNIST (z of width 8, 3 epochs) a weight of
#: 1 leaves the MMD match's latent MMD^2 at 0.20 against 0.04 with 10 (WAE-MMD's lambda),
#: while 10 worsens the Sinkhorn match (MMD^2 0.14, 17 nats more reconstruction NLL, at
#: epsilon 1) and gains little for the adversarial one (0.026 against 0.041).
DEFAULT_WEIGHTS = {"adversarial": 1.0, "mmd": 10.0, "sinkhorn": 1.0}
#: Posterior and prior draws of the latent MMD^2 that ``ppgen eval`` reports.
LATENT_SAMPLES = 2000


def is_images(dataset: str) -> bool:
    """Whether ``dataset`` holds images (a Bernoulli decoder), else 2-D points (Gaussian)."""
    return dataset in ppdata.IMAGE_DATASETS


@dataclass(frozen=True)
class AAEOptions(Options):
    """Settings of ``aae`` (networks: the ``vae`` recipe's; z of width 8 on images, as the
    WAE's MNIST experiments, 2 on 2-D data)."""

    match: str = option(
        "adversarial",
        "how q(z) is matched to p(z): a critic (Makhzani et al. 2015), MMD (InfoVAE, WAE-MMD) "
        "or the Sinkhorn divergence (Patrini et al. 2019)",
        choices=AAE_MATCHES,
    )
    weight: float = option(
        -1.0,
        "weight of the match against the reconstruction NLL (nats per example); 0: a plain "
        "autoencoder with a noisy encoder; -1: the match's default (adversarial 1, mmd 10 "
        "as WAE-MMD's lambda, sinkhorn 1)",
    )
    latent: int = option(0, "dimension of z (0: 8 on images, 2 on 2-D data)",
                         parse=non_negative_int)  # fmt: skip
    hidden: tuple[int, ...] = option(
        (200, 200), "hidden widths of encoder and decoder, e.g. 200,200", parse=layer_sizes
    )
    activation: str = option("tanh", "hidden activation", choices=ACTIVATION_NAMES)
    binarize: str = option(
        "dynamic",
        "images: fresh Bernoulli pixels every step (dynamic) or drawn once (static)",
        choices=("dynamic", "static"),
    )
    loss: str = option("nonsaturating", "adversarial: the critic's loss",
                       choices=ADVERSARIAL_LOSSES)  # fmt: skip
    n_critic: int = option(1, "adversarial: critic updates per encoder-decoder update",
                           parse=positive_int)  # fmt: skip
    gradient_penalty: float = option(
        -1.0, "adversarial: the critic's gradient penalty (-1: 10 for wgan-gp, 0 else)"
    )
    critic_hidden: tuple[int, ...] = option(
        (128, 128), "adversarial: hidden widths of the critic on z", parse=layer_sizes
    )
    lr_critic: float = option(
        0.0, "adversarial: the critic's learning rate (0: --lr)", parse=non_negative_float
    )
    kernel: str = option("imq", "mmd: the kernel (WAE-MMD's inverse multiquadrics, or "
                         "Gaussians)", choices=MMD_KERNELS)  # fmt: skip
    bandwidths: tuple[float, ...] = option(
        (),
        "mmd: the kernel's bandwidths (IMQ scales c, or Gaussian standard deviations), e.g. "
        "1,4,16; empty: scaled to z's width d (IMQ: 2d x 0.1..10, WAE; Gaussian: sqrt(d/2) x "
        "0.5,1,2, InfoVAE)",
        parse=lambda text: tuple(positive(float)(v) for v in text.split(",") if v.strip()),
    )
    epsilon: float = option(1.0, "sinkhorn: entropic regularisation epsilon > 0, in the cost's "
                            "units", parse=positive(float))  # fmt: skip
    p: int = option(2, "sinkhorn: the cost |z - z'|_2^p, p = 1 or 2", parse=int)
    rho: float = option(
        0.0, "sinkhorn: unbalanced transport, the KL penalty rho > 0 on the marginals, in the "
        "cost's units (Sejourne et al. 2019); 0: balanced", parse=non_negative_float,
    )  # fmt: skip
    max_iterations: int = option(
        1000,
        "sinkhorn: iteration cap of each Sinkhorn solve (a warning says when it is reached)",
        parse=positive_int,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.p not in (1, 2):
            raise ConfigError(f"--p must be 1 or 2 (the cost |z - z'|^p), got {self.p}")
        if not self.epsilon > 0:
            raise ConfigError(f"--epsilon must be > 0, got {self.epsilon}")
        if not (self.rho >= 0 and math.isfinite(self.rho)):
            raise ConfigError(f"--rho must be a finite number >= 0 (0: balanced), got {self.rho}")
        if self.weight < 0 and self.weight != -1:
            raise ConfigError(
                f"--weight must be >= 0 (or -1: the match's default), got {self.weight}"
            )
        if self.gradient_penalty < 0 and self.gradient_penalty != -1:
            raise ConfigError(
                f"--gradient-penalty must be >= 0 (or -1: the loss's default), got "
                f"{self.gradient_penalty}"
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for match, names in MATCH_OPTIONS.items():
            if match == self.match:
                continue
            changed = [
                "--" + name.replace("_", "-")
                for name in names
                if name in defaults and getattr(self, name) != defaults[name]
            ]
            if changed:
                one = len(changed) == 1
                raise ConfigError(
                    f"{' and '.join(changed)} {'belongs' if one else 'belong'} to --match "
                    f"{match}, not --match {self.match}; drop {'it' if one else 'them'} or use "
                    f"--match {match}"
                )

    def latent_dim(self, dataset: str) -> int:
        """The width of z: ``--latent``, or 8 on images and 2 on 2-D data."""
        return self.latent or (8 if is_images(dataset) else 2)

    @property
    def match_weight(self) -> float:
        """The objective's ``weight``: ``--weight``, or the match's default
        (:data:`DEFAULT_WEIGHTS`)."""
        return DEFAULT_WEIGHTS[self.match] if self.weight == -1 else self.weight

    @property
    def penalty(self) -> float | None:
        """The objective's ``gradient_penalty`` (``None``: the loss's default)."""
        return None if self.gradient_penalty == -1 else self.gradient_penalty


class _ReconstructionEvaluator:
    """The trainer's validation: the reconstruction NLL per example (nats), ``"loss"``."""

    def __init__(self, objective: Any) -> None:
        self.objective = objective

    def __call__(self, trainer: Any, state: Any, data: Any) -> dict[str, float]:
        nll = -trainer.evaluate_bound(state, data, objective=self.objective.reconstruction)["elbo"]
        return {"loss": nll, "reconstruction_nll": nll}


class AAERecipe(VAERecipe):
    """``aae``: a VAE's pair fitted by reconstruction and a prior match (module docstring)."""

    name = "aae"
    help = "adversarial autoencoder (Makhzani et al. 2015) and its MMD / Sinkhorn variants"
    description = __doc__.split("\n\n")[0]
    options = AAEOptions
    defaults = {"dataset": "mnist", "lr": 1e-3}
    datasets = (*ppdata.IMAGE_DATASETS, *MODE_DATASETS)
    eval_flags = ("limit",)
    eval_report = (
        "the test reconstruction NLL in nats per example, the MMD^2 between posterior and "
        "prior draws of z, and the samples' FID and KID (MNIST) or modes covered (2-D sets)"
    )

    def __init__(self) -> None:  # the VAERecipe's name and flavour are this class's own
        pass

    # -- data ---------------------------------------------------------------------------

    def prepare(self, config: RunConfig) -> FitData:
        if is_images(config.dataset):
            return super().prepare(config)
        train = ppdata.load_dataset(config.dataset, config.train_split)
        valid = None
        if config.train_split == "train":
            valid = ppdata.load_dataset(config.dataset, "valid").x
        test = ppdata.load_dataset(config.dataset, "test").x
        return FitData(train=train.x, valid=valid, test=test, num_data=len(train))

    def shapes(self, config: RunConfig) -> FitData:
        if is_images(config.dataset):
            return super().shapes(config)
        return stand_in(config, np.zeros((2, 2), np.float32))

    def loss_unit(self, config: RunConfig) -> str:
        return "nats per example + weight x match"

    # -- model --------------------------------------------------------------------------

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        """The VAE (Bernoulli decoder on images, Gaussian with a learned scale on 2-D data),
        the ``AAE`` objective and its trainer (two players for the adversarial match)."""
        o = config.options
        images = is_images(config.dataset)
        z_dim = o.latent_dim(config.dataset)
        model = backend.models.VAE(
            data.x_dim, latent=z_dim, hidden=o.hidden, activation=o.activation,
            likelihood="bernoulli" if images else "gaussian", seed=config.seed,
        )  # fmt: skip
        inference = backend.inference
        critic = None
        if o.match == "adversarial":
            critic = backend.models.MLPCritic(z_dim, hidden=o.critic_hidden, seed=config.seed + 1)
        objective = inference.AAE(
            o.match, critic=critic, weight=o.match_weight, loss=o.loss, gradient_penalty=o.penalty,
            n_critic=o.n_critic, kernel=o.kernel, bandwidths=o.bandwidths or None,
            epsilon=o.epsilon, p=o.p, rho=o.rho or None, max_iterations=o.max_iterations,
        )  # fmt: skip
        steps = max(1, data.num_data // config.batch_size)
        settings = trainer_settings(config, steps)
        if o.match == "adversarial":
            if config.weight_decay:
                raise ConfigError(
                    "aae --match adversarial takes no --weight-decay (each player has its own Adam)"
                )
            for name in ("lr", "lr_schedule", "weight_decay", "total_steps"):
                settings.pop(name)
            settings["groups"] = adversarial_groups(
                lr_critic=o.lr_critic or config.lr, lr_generator=config.lr,
                n_critic=o.n_critic, lr_schedule=config.lr_schedule,
                total_steps=config.epochs * steps,
            )  # fmt: skip
        dynamic = images and o.binarize == "dynamic"
        trainer = inference.Trainer(
            model.model, model.guide, objective, num_data=data.num_data,
            transform=inference.DynamicBinarization() if dynamic else None,
            evaluator=_ReconstructionEvaluator(objective), **settings,
        )  # fmt: skip
        return Built(model, objective, trainer)

    # -- evaluation -----------------------------------------------------------------------

    def latent_match(self, run: Run, x: np.ndarray) -> float:
        """The unbiased MMD^2 between one draw ``z ~ q(z | x)`` per row of ``x`` and as many
        draws of the prior ``N(0, I)`` (numpy's generator seeded with the run's seed), with
        WAE-MMD's IMQ kernel at its default scales for z's width, whatever the run's match."""
        loc, scale = encode_posteriors(run, x)
        rng = np.random.default_rng(run.config.seed)
        z_q = (loc + scale * rng.standard_normal(loc.shape)).astype(np.float32)
        z_p = rng.standard_normal(loc.shape).astype(np.float32)
        inference = run.backend.inference
        bandwidths = inference.AAE("mmd").kernel_bandwidths(loc.shape[1])
        mmd2 = inference.discrepancy.mmd2_unbiased
        return float(inference.compute(mmd2, z_q, z_p, kernel="imq", bandwidths=bandwidths))

    def evaluate(self, run: Run, *, limit: int | None = None, **_: Any) -> dict[str, Any]:
        """The test reconstruction NLL (one ``z ~ q(z | x)`` per example, nats), the latent
        MMD^2 (:meth:`latent_match`, on up to 2,000 test examples) and the samples' quality:
        FID, KID and classes of 10,000 samples against the test set (MNIST), modes covered
        and the high-quality share of 2,500 (2-D sets); ``limit``: at most that many test
        examples and samples."""
        refuse_stand_in(run, "evaluating")
        t0 = time.perf_counter()
        x = run.data.test[:limit]
        nll = -run.trainer.evaluate_bound(run.state, x, objective=run.objective.reconstruction)[
            "elbo"
        ]
        out: dict[str, Any] = {
            "test_reconstruction_nll": nll,
            "latent_mmd2": self.latent_match(run, x[:LATENT_SAMPLES]),
            "n": len(x),
        }
        dataset = run.config.dataset
        if dataset == "mnist":
            from ppgen.classifier import check_fid_count, image_sample_metrics, load_classifier

            n = EVAL_SAMPLES["images"] if limit is None else min(EVAL_SAMPLES["images"], limit)
            classifier = load_classifier()
            check_fid_count(n, classifier, "--limit")  # before drawing the samples
            samples = self.sample(run, n, seed=run.config.seed)
            out.update(image_sample_metrics(samples, run.data.test[: max(n, 10_000)], classifier))
            out["samples"] = n
        elif not is_images(dataset):
            from ppgen.sample_quality import mode_metrics

            n = EVAL_SAMPLES["modes"] if limit is None else min(EVAL_SAMPLES["modes"], limit)
            out.update(mode_metrics(self.sample(run, n, seed=run.config.seed), dataset))
            out["samples"] = n
        return {**out, "epoch": run.epoch + 1, "seconds": time.perf_counter() - t0}

    def summary(self, out: dict[str, Any]) -> str:
        line = (
            f"test reconstruction NLL {out['test_reconstruction_nll']:.2f} nats, latent MMD^2 "
            f"{out['latent_mmd2']:.4f} ({out['n']} examples)"
        )
        if "fid" in out:
            line += (
                f"; FID {out['fid']:.2f}, KID {out['kid']:.4f} ± {out['kid_std']:.4f}, "
                f"{out['classes']}/10 classes ({out['samples']} samples)"
            )
        elif "modes" in out:
            line += (
                f"; {out['modes']}/{out['num_modes']} modes covered, "
                f"{100 * out['hq_share']:.1f}% high-quality samples ({out['samples']} samples)"
            )
        return f"{line}; epoch {out['epoch']}, {out['seconds']:.0f} s"

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        if is_images(run.config.dataset):
            return super().save_samples(run, samples, path)
        return modes_picture(samples, run.config.dataset, path)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """Samples and reconstructions (images) or samples over the modes (2-D sets), the
        latent map when z is 2-D, and the training curves."""
        refuse_stand_in(run, "drawing the pictures of")
        out_dir = Path(out_dir)
        dataset = run.config.dataset
        if is_images(dataset):
            paths = samples_and_reconstructions(run, out_dir)
        else:
            paths = [modes_picture(self.sample(run, 2500), dataset, out_dir / "samples_2d.png")]
        if run.model.latent == 2:
            paths.append(self.latent_map(run, out_dir / "latent_map.png"))
        two = run.config.options.match == "adversarial"
        keys = ("loss_critic", "loss_generator") if two else ("loss",)
        paths.append(
            plots.save_training_curves(
                run.directory / "metrics.jsonl",
                out_dir / "curves.png",
                keys=keys,
                right_keys=("valid_loss",),
                right_label="validation reconstruction NLL (nats)",
                unit=self.loss_unit(run.config),
            )  # fmt: skip
        )
        return paths

    def latent_map(self, run: Run, path: Path, n: int = 2000) -> Path:
        """The posterior means of up to ``n`` test examples (coloured by class where the
        data have labels) over draws of the prior ``N(0, I)``: how well ``q(z)`` fills
        ``p(z)`` (Makhzani et al. 2015, figure 2)."""
        import matplotlib.pyplot as plt

        x = run.data.test[:n]
        loc, _ = encode_posteriors(run, x)
        labels = None
        if is_images(run.config.dataset):  # the test set as prepared: static, seed 0
            labels = ppdata.load_dataset(run.config.dataset, "test", binarize="static", seed=0).y
        prior = np.random.default_rng(0).standard_normal((len(loc), 2))
        fig, ax = plt.subplots(figsize=(5.5, 5))
        ax.scatter(prior[:, 0], prior[:, 1], s=2, color="0.8", label="prior draws")
        if labels is None:
            ax.scatter(loc[:, 0], loc[:, 1], s=3, color="tab:blue", label="q(z|x) means")
        else:
            points = ax.scatter(loc[:, 0], loc[:, 1], s=3, c=labels[: len(loc)], cmap="tab10",
                                label="q(z|x) means")  # fmt: skip
            fig.colorbar(points, ax=ax, label="class")
        ax.set_xlabel("z[0]")
        ax.set_ylabel("z[1]")
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8, markerscale=4)
        ax.set_title(f"latent map ({run.config.options.match} match)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


AAE = register(AAERecipe())
