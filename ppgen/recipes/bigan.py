"""``bigan``: BiGAN / ALI, a generator and an encoder against a critic of ``(x, z)`` pairs.

``ppgen train bigan`` fits ``BiGANModel`` (the generator ``x = G(z)`` as the model, the
encoder ``z ~ q(z | x)`` as the guide: BiGAN's deterministic ``E(x)``, Donahue et al. 2016,
or ALI's Gaussian, Dumoulin et al. 2016, ``--encoder``) with the ``BiGAN`` objective, whose
critic scores ``(x, E(x))`` against ``(G(z), z)``. Data, losses, players, validation and
sample figures are the ``gan`` recipe's (:mod:`ppgen.recipes.likelihood_free`); the
evaluation adds how well the encoder inverts the generator: the mean squared error of
``G(E(x))`` on the test set, and whether the reconstruction keeps what ``x`` is (on MNIST
the dataset classifier's label of ``G(E(x))`` against ``x``'s label; on the 2-D sets the
nearest mode of ``G(E(x))`` against ``x``'s), and the picture ``reconstructions.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.recipes.base import Backend, FitData, option, refuse_stand_in
from ppgen.recipes.likelihood_free import (
    IMAGE_DATASETS,
    MODE_DATASETS,
    GANOptions,
    GANRecipe,
    dataset_classifier,
    is_images,
    modes_picture,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["BiGANOptions", "BiGANRecipe", "reconstruction_metrics"]

ENCODERS = ("deterministic", "gaussian")
#: Test rows reconstructed in one call (bounds the DCGAN's feature maps in memory).
CHUNK = 1000
#: Test rows in ``reconstructions.png`` (two rows of originals over their reconstructions)
#: and, on the 2-D sets, reconstructed points drawn over the modes.
PICTURE_ROWS = {"images": 32, "modes": 2500}


@dataclass(frozen=True)
class BiGANOptions(GANOptions):
    """Settings of ``bigan``: the ``gan`` ones and the encoder's kind."""

    encoder: str = option(
        "deterministic", "the encoder q(z | x): deterministic E(x) (BiGAN) or a "
        "reparameterised Gaussian (ALI)", choices=ENCODERS,
    )  # fmt: skip


def reconstruction_metrics(
    x: np.ndarray, x_rec: np.ndarray, dataset: str, y: np.ndarray | None = None
) -> dict[str, float]:
    """How well ``G(E(x))`` reconstructs ``x``, both ``(n, D)``: ``reconstruction_mse``, the
    squared error averaged over examples and features (pixels in [0, 1], or 2-D
    coordinates); on a 2-D set, ``reconstruction_same_mode``, the share of examples whose
    reconstruction lies nearest the same mode as they do; on images with labels ``y``
    ``(n,)``, ``reconstruction_label_accuracy``, the share of reconstructions the dataset
    classifier gives the original's label."""
    out = {"reconstruction_mse": float(np.mean((x_rec - x) ** 2))}
    if dataset in MODE_DATASETS:
        from ppgen.data.toy import toy_modes

        centers, _ = toy_modes(dataset)

        def nearest(points: np.ndarray) -> np.ndarray:
            return np.argmin(((points[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)

        out["reconstruction_same_mode"] = float(np.mean(nearest(x) == nearest(x_rec)))
    elif y is not None:
        predicted = dataset_classifier().predict_proba(x_rec).argmax(-1)
        out["reconstruction_label_accuracy"] = float(np.mean(predicted == y))
    return out


class BiGANRecipe(GANRecipe):
    """``bigan``: BiGAN / ALI, a generator and an encoder trained against a joint critic
    ``D(x, z)`` (two parameter groups: the critic, and the generator with the encoder)."""

    name = "bigan"
    help = "BiGAN / ALI: a generator and an encoder against a critic of (x, z) pairs"
    description = (
        "BiGAN (Donahue et al. 2016) / ALI (Dumoulin et al. 2016): a generator x = G(z) and "
        "an encoder z ~ q(z | x) trained together against a critic that tells (x, E(x)) "
        "from (G(z), z); the encoder learns to invert the generator."
    )
    options = BiGANOptions
    datasets = (*IMAGE_DATASETS, *MODE_DATASETS)
    defaults = {"dataset": "mnist", "lr": 2e-4, "batch_size": 100, "epochs": 20}
    eval_report = (
        "gan's figures (2-D sets: modes covered and high-quality share of 2,500 samples; "
        "images: FID, KID and classes of 10,000), and the reconstructions G(E(x)) of the test "
        "set: mean squared error, the share keeping x's mode (2-D) or its label by the "
        "dataset classifier (images)"
    )

    def generator(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, z_dim = o.resolved(config.dataset)
        return backend.models.BiGANModel(
            (data.x_dim,), z_dim=z_dim, architecture=arch,
            hidden=o.channels if arch == "dcgan" else o.hidden, encoder=o.encoder,
            output="sigmoid" if is_images(config.dataset) else "identity", seed=config.seed,
        )  # fmt: skip

    def critic(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, z_dim = o.resolved(config.dataset)
        if arch == "dcgan":
            return backend.models.DCGANCritic((data.x_dim,), channels=o.channels[1],
                                              z_dim=z_dim, seed=config.seed + 1)  # fmt: skip
        return backend.models.MLPCritic(data.x_dim, hidden=o.hidden, z_dim=z_dim,
                                        seed=config.seed + 1)  # fmt: skip

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.BiGAN(
            self.critic(config, data, backend), loss=o.loss, gradient_penalty=o.penalty,
            n_critic=o.n_critic,
        )  # fmt: skip

    # -- evaluation -----------------------------------------------------------------------

    def reconstruct(self, run: Run, x: np.ndarray) -> np.ndarray:
        """``G(E(x))`` of the rows ``x`` ``(n, D)``, numpy ``(n, D)``, in chunks."""
        compute = run.backend.inference.compute
        parts = [
            np.asarray(compute(run.model.reconstruct, x[start : start + CHUNK]))
            for start in range(0, len(x), CHUNK)
        ]
        return np.concatenate(parts).reshape(len(x), -1)

    def evaluate(self, run: Run, *, limit: int | None = None, **settings: Any) -> dict[str, Any]:
        """``gan``'s figures and :func:`reconstruction_metrics` of the test set (its first
        ``limit`` rows)."""
        out = super().evaluate(run, limit=limit, **settings)
        x = run.data.test_x
        n = len(x) if limit is None else min(len(x), limit)
        x = np.asarray(x[:n])
        y = None
        if is_images(run.config.dataset):  # the labels of image_splits' test set, same order
            y = ppdata.load_dataset(run.config.dataset, "test").y[:n]
        metrics = reconstruction_metrics(x, self.reconstruct(run, x), run.config.dataset, y)
        return {**out, **metrics, "reconstructed": n}

    def summary(self, out: dict[str, Any]) -> str:
        line = f"{super().summary(out)}; reconstructions of {out['reconstructed']} test "
        line += f"examples: MSE {out['reconstruction_mse']:.4f}"
        if "reconstruction_same_mode" in out:
            line += f", {100 * out['reconstruction_same_mode']:.1f}% in x's mode"
        if "reconstruction_label_accuracy" in out:
            line += f", {100 * out['reconstruction_label_accuracy']:.1f}% keep x's label"
        return line

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """``gan``'s pictures and ``reconstructions.png``: test images over their
        reconstructions ``G(E(x))`` (rows in turn), or on a 2-D set the reconstructions of
        2,500 test points over the modes."""
        refuse_stand_in(run, "drawing the pictures of")
        paths = super().pictures(run, out_dir)
        path = Path(out_dir) / "reconstructions.png"
        if is_images(run.config.dataset):
            x = np.asarray(run.data.test_x[: PICTURE_ROWS["images"]])
            rec = self.reconstruct(run, x)
            paths.append(plots.save_reconstructions(x, rec, path, run.data.image_shape))
        else:
            x = np.asarray(run.data.test_x[: PICTURE_ROWS["modes"]])
            paths.append(modes_picture(self.reconstruct(run, x), run.config.dataset, path))
        return paths


BIGAN = register(BiGANRecipe())
