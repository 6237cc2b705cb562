"""The flow family: ``flow``, a normalizing flow fitted by exact maximum likelihood.

``ppgen train flow --flow NAME`` fits ``TransformedDistribution(Normal(0, I), flow)``
(``ppgen.models.{pyro,numpyro}.FlowDensity``) with the ordinary trainer and the ELBO, which
for a model without latent sites is the exact log-likelihood. Flows: planar and radial
(Rezende & Mohamed 2015), NICE (Dinh et al. 2014), RealNVP (Dinh et al. 2016), MAF
(Papamakarios et al. 2017), IAF (Kingma et al. 2016), NSF (Durkan et al. 2019; ``nsf`` spline
couplings, ``nsf_ar`` autoregressive splines) and Glow (Kingma & Dhariwal 2018).

Data: the toy 2-D densities (``moons``, ``8gaussians``, ``checkerboard``, ``pinwheel``,
``spirals``; ``ppgen.data.toy``) as they are, and grey-scale images (``digits``, ``mnist``)
uniformly dequantised (Theis et al. 2016): a pixel of ``L`` grey levels ``k / (L - 1)`` is
trained on as ``k + u`` with fresh ``u ~ U[0, 1)`` every step, and scored on one fixed draw
of ``u`` (seed 0) for validation and test. Image flows end with RealNVP's logit map
(``v -> logit(alpha + (1 - 2 alpha) v)``) and the dequantisation ``v = (k + u) / L``, both
Jacobians counted (``with_logit(flow, alpha, levels=L)``), so the model's ``-log p(k + u)``
is the dequantised NLL of the ``L``-level data, ``-log p(v) + D log L`` nats per image: the
training loss, the validation loss and ``ppgen eval``'s test NLL are that one figure, and
bits/dim is ``NLL / (D log 2)`` (the standard figures: ``L = 256`` for MNIST, 17 for
digits; the training curves carry a bits/dim axis for images). ``ppgen eval`` reports the
exact test NLL in nats, and bits/dim for images.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.metrics import summarize_nll
from ppgen.models import flows
from ppgen.models.image_flows import CONDITIONERS
from ppgen.models.transforms import PLANAR_PARAMS, RADIAL_PARAMS
from ppgen.recipes.base import (
    IMAGE_SHAPES,
    STAND_IN_ROWS,
    Backend,
    Built,
    FitData,
    MADEDegrees,
    Options,
    Recipe,
    exact_likelihood,
    exact_log_px,
    image_splits,
    image_stand_in,
    layer_sizes,
    non_negative_int,
    option,
    positive_int,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "FLOW_CHOICES",
    "IMAGE_FLOW_NAMES",
    "FlowOptions",
    "FlowRecipe",
    "flow_event_shape",
    "grey_levels",
]

FLOW_CHOICES = ("planar", "radial", "nice", "realnvp", "maf", "iaf", "nsf", "nsf_ar", "glow")
"""``--flow`` choices; ``realnvp`` on images is the multi-scale RealNVP."""

IMAGE_FLOW_NAMES = {"glow": "glow", "realnvp": "realnvp_multiscale"}
"""The image flow (``ppgen.models.flows.IMAGE_FLOWS``) each ``--flow`` builds on images."""

# Unconditional planar and radial maps have no conditioner network, only these parameters.
_NO_NETWORK = {"planar": PLANAR_PARAMS, "radial": RADIAL_PARAMS}
_SPLINE_FLOWS = ("nsf", "nsf_ar")  # the flows --bins and --bound configure
_DEQUANTISE_SEED = 0  # the fixed noise draw of validation and test images
_INIT_ROWS = 512  # training rows of Glow's data-dependent initialisation


@dataclass(frozen=True)
class FlowOptions(MADEDegrees):
    """Settings of ``flow`` (defaults: 5 transforms with two hidden layers of 64, the
    architecture of ``benchmarks/flow_toy.py``)."""

    flow: str = option("realnvp", "the flow", choices=FLOW_CHOICES)
    layers: int = option(
        5,
        "transforms in the flow (image flows: steps per scale)",
        parse=non_negative_int,
        metavar="N",
    )
    hidden: tuple[int, ...] = option(
        (64, 64),
        "hidden widths of every conditioner network, e.g. 64,64 (image flows: the first is "
        "the conv nets' channels; planar and radial have no network and refuse it)",
        parse=layer_sizes,
    )
    bins: int = option(8, "spline bins K (nsf, nsf_ar)", parse=positive_int)
    bound: float = option(
        5.0, "spline half-width B: the splines are the identity outside [-B, B] (nsf, nsf_ar)"
    )
    logit_alpha: float = option(
        0.05, "images: the logit map's alpha, logit(alpha + (1 - 2 alpha) x) (RealNVP's 0.05)"
    )
    conditioner: str = option(
        "auto",
        "image flows: the couplings' conv nets, auto (each flow's own: Glow's 3x3-1x1-3x3 "
        "net for glow, RealNVP's residual net for realnvp), glow or resnet",
        choices=("auto", *CONDITIONERS),
    )

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Options:
        """As :meth:`MADEDegrees.from_json`, with ``conditioner`` ``"resnet"`` for a Glow run
        stored before the setting existed (2026-12-03), which was trained with RealNVP's
        residual net; ``"auto"`` for the others (the multi-scale RealNVP's own net is that
        one already)."""
        if "conditioner" not in raw:
            raw = {**raw, "conditioner": "resnet" if raw.get("flow") == "glow" else "auto"}
        return super().from_json(raw)

    def __post_init__(self) -> None:
        for flag, value in (("--bound", self.bound), ("--logit-alpha", self.logit_alpha)):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{flag} must be a finite number, got {value}")
        super().__post_init__()
        if self.layers < 1:
            raise ConfigError(f"a flow needs at least one layer, got --layers {self.layers}")
        if not self.bound > 0:
            raise ConfigError(f"--bound must be > 0 (the spline's half-width), got {self.bound}")
        if not 0 <= self.logit_alpha < 0.5:
            raise ConfigError(f"--logit-alpha must be in [0, 0.5), got {self.logit_alpha}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        changed = [k for k in ("bins", "bound") if getattr(self, k) != defaults[k]]
        if changed and self.flow not in _SPLINE_FLOWS:
            flags = " and ".join(f"--{k}" for k in changed)
            raise ConfigError(
                f"{flags} {'set' if len(changed) > 1 else 'sets'} the rational-quadratic "
                f"splines of nsf and nsf_ar, and "
                f"{self.flow} has none; drop {flags} or choose --flow nsf"
            )
        if self.flow in _NO_NETWORK and self.hidden != defaults["hidden"]:
            raise ConfigError(
                f"--hidden sets the conditioner networks, and {self.flow} has none (its "
                f"parameters are {', '.join(_NO_NETWORK[self.flow])}); drop --hidden"
            )


def grey_levels(dataset: str) -> int | None:
    """Grey levels ``L`` of an image dataset (``None`` for the toy densities)."""
    return ppdata.GREY_LEVELS.get(dataset)


def is_image_flow(flow: str, dataset: str) -> bool:
    """Whether ``--flow`` on ``dataset`` builds an image flow (convolutional conditioners):
    ``glow`` always (refused on non-images by :func:`flow_event_shape`), ``realnvp`` as
    multi-scale RealNVP on image datasets."""
    return flow == "glow" or (flow == "realnvp" and grey_levels(dataset) is not None)


def flow_event_shape(flow: str, dataset: str, image_shape: tuple[int, int], dim: int):
    """``(name, event_shape)`` of the flow a run builds: image flows (``glow``, and
    ``realnvp`` as multi-scale RealNVP) on ``(1, H, W)`` images, vector flows on ``(D,)``.

    Raises:
        ConfigError: An image flow on data that are not images (the toy densities).
    """
    if is_image_flow(flow, dataset):
        if grey_levels(dataset) is None:
            raise ConfigError(
                f"--flow {flow} is an image flow: it needs image data (--dataset "
                f"{' or '.join(ppdata.IMAGE_DATASETS)}), got {dataset!r}, {dim}-dimensional "
                "points; use a vector flow (realnvp, maf, nsf, ...)"
            )
        return IMAGE_FLOW_NAMES[flow], (1, *image_shape)
    return flow, (dim,)


def _grey_levels_k(x: np.ndarray, levels: int) -> np.ndarray:
    """The levels ``k`` of pixels ``k / (L - 1)``, as floats."""
    return np.rint(x.astype(np.float64) * (levels - 1)).astype(np.float32)


def _dequantised(x: np.ndarray, levels: int, seed: int) -> np.ndarray:
    """``k + u`` for pixels ``k / (L - 1)``, ``u ~ U[0, 1)`` drawn from ``seed``."""
    u = np.random.default_rng(seed).random(x.shape)
    return (_grey_levels_k(x, levels) + u).astype(np.float32)


class FlowRecipe(Recipe):
    """``flow``: evaluated by the exact test NLL (nats; bits/dim for images)."""

    name = "flow"
    help = "normalizing flow, exact likelihood (planar, radial, NICE, RealNVP, MAF, IAF, NSF, Glow)"
    description = __doc__.split("\n\n")[0]
    options = FlowOptions
    defaults = {"lr": 1e-3, "dataset": "moons"}
    datasets = (*ppdata.TOY_DATASETS, *ppdata.IMAGE_DATASETS)
    eval_flags = ("limit", "batch_size")
    eval_report = "the exact test NLL in nats per example, and in bits/dim for images"

    def prepare(self, config: RunConfig) -> FitData:
        levels = grey_levels(config.dataset)
        if levels is None:
            train = ppdata.load_dataset(config.dataset, config.train_split)
            valid = None
            if config.train_split == "train":
                valid = ppdata.load_dataset(config.dataset, "valid")
            test = ppdata.load_dataset(config.dataset, "test")
            xs = [None if d is None else d.x for d in (train, valid, test)]
        else:
            splits = image_splits(config.dataset, config.train_split, "none", config.seed)
            train, test = splits.train, splits.test
            # Training pixels are their levels k; the trainer's UniformNoise adds u every
            # step. Validation and test: one fixed draw.
            xs = [
                _grey_levels_k(train.x, levels),
                None if splits.valid is None else _dequantised(splits.valid.x, levels, 1),
                _dequantised(test.x, levels, _DEQUANTISE_SEED),
            ]
        name, _ = flow_event_shape(
            config.options.flow, config.dataset, test.image_shape, test.x.shape[1]
        )
        del name  # checked here, before any data is fitted
        o = config.options
        if o.conditioner != "auto" and not is_image_flow(o.flow, config.dataset):
            raise ConfigError(
                f"--conditioner sets the conv nets of the image flows (glow, and realnvp on "
                f"images), and {o.flow} on {config.dataset} has none; drop --conditioner"
            )
        return FitData(
            train=xs[0],
            valid=xs[1],
            test=xs[2],
            num_data=len(train),
            image_shape=test.image_shape,
            num_classes=None,
        )

    def settle(self, config: RunConfig, data: FitData) -> RunConfig:
        """Refuse ``--logit-alpha`` on data that are not images (it sets the logit map of
        image flows, which the 2-D densities do not have), as ``--bins`` is refused where it
        configures nothing; store an image flow's ``--conditioner auto`` as the net it
        builds (``"glow"`` or ``"resnet"``, :func:`ppgen.models.flows.image_conditioner`), so
        ``config.json`` says which and a later change of default leaves the run as trained.

        Raises:
            ConfigError: ``--logit-alpha`` set for a toy density.
        """
        alpha = next(f for f in dataclasses.fields(FlowOptions) if f.name == "logit_alpha")
        if grey_levels(config.dataset) is None and config.options.logit_alpha != alpha.default:
            raise ConfigError(
                f"--logit-alpha sets the logit map of image data, and {config.dataset} is a "
                "2-D density with none; drop --logit-alpha"
            )
        o = config.options
        if o.conditioner == "auto" and is_image_flow(o.flow, config.dataset):
            own = flows.image_conditioner(IMAGE_FLOW_NAMES[o.flow], None)
            config = dataclasses.replace(config, options=dataclasses.replace(o, conditioner=own))
        return config

    def shapes(self, config: RunConfig) -> FitData | None:
        """Images: placeholder grey levels ``k`` (float32 ``(2, H * W)``, drawn at random
        so that Glow's data-dependent initialisation stays finite; the checkpoint replaces
        what it sets). The toy densities are drawn, not read (``None``: :meth:`prepare`,
        whose test points the 2-D sample picture shows)."""
        levels = grey_levels(config.dataset)
        if levels is None:
            return None
        (h, w), _ = IMAGE_SHAPES[config.dataset]
        k = np.random.default_rng(0).integers(0, levels, (STAND_IN_ROWS, h * w))
        return dataclasses.replace(image_stand_in(config, x=k.astype(np.float32)), num_classes=None)

    def epoch_loop(self, config: RunConfig) -> str:
        """``"steps"`` for the image flows (conv conditioners, see Recipe.epoch_loop)."""
        return "steps" if is_image_flow(config.options.flow, config.dataset) else "scan"

    def density(self, config: RunConfig, data: FitData, backend: Backend) -> tuple[Any, Any]:
        """``(FlowDensity, transform)``: the run's flow model (with the logit map and the
        dequantisation's Jacobian on images, and Glow's data-dependent initialisation) and
        the trainer's data transform (uniform dequantisation noise on images, else
        ``None``)."""
        o = config.options
        levels = grey_levels(config.dataset)
        name, shape = flow_event_shape(o.flow, config.dataset, data.image_shape, data.x_dim)
        models = backend.models
        flow = models.build_flow(
            name, shape, layers=o.layers, hidden=o.hidden, bins=o.bins, bound=o.bound,
            seed=config.seed, degrees=o.degrees,
            conditioner=None if o.conditioner == "auto" else o.conditioner,
        )  # fmt: skip
        if levels is not None:  # -log p(k + u) in nats of the L-level data (module doc)
            flow = models.with_logit(flow, o.logit_alpha, levels=levels)
        if name == "glow":  # ActNorm's data-dependent initialisation, on dequantised rows
            k = data.train[:_INIT_ROWS]
            rows = k + np.random.default_rng(config.seed).random(k.shape).astype(np.float32)
            events = rows.reshape(len(rows), *shape)
            flow = backend.inference.compute(flow.initialize, events)
        transform = None if levels is None else backend.inference.UniformNoise(1.0)
        return models.FlowDensity(shape, flow), transform

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        model, transform = self.density(config, data, backend)
        return exact_likelihood(config, data, backend, model, transform)

    def evaluate(
        self,
        run: Run,
        *,
        limit: int | None = None,
        batch_size: int = 1000,
        progress: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        """Exact test NLL (nats) through ppgen's estimator: with the flow's empty guide
        every importance weight is ``p(x)`` itself, so one sample is exact."""
        x = run.data.test[:limit]
        t0 = time.perf_counter()
        # Images: the model's density is already over k + u, the L-level data's NLL.
        log_px = exact_log_px(run, x, batch_size=batch_size, progress=progress)
        levels = grey_levels(run.config.dataset)
        summary = summarize_nll(log_px, x.shape[1])
        out = {
            "test_nll": summary["nll"],
            "test_nll_stderr": summary["nll_stderr"],
            "exact": True,
            "n": summary["n"],
            "epoch": run.epoch + 1,
            "seconds": time.perf_counter() - t0,
        }
        if levels is not None:
            out["test_bits_per_dim"] = summary["bits_per_dim"]
        return out

    def summary(self, out: dict[str, Any]) -> str:
        bpd = f" ({out['test_bits_per_dim']:.4f} bits/dim)" if "test_bits_per_dim" in out else ""
        return (
            f"exact test NLL {out['test_nll']:.4f} ± {out['test_nll_stderr']:.4f} nats{bpd}; "
            f"{out['n']} examples, epoch {out['epoch']}, {out['seconds']:.0f} s"
        )

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        x = np.asarray(run.backend.inference.draw(run.model.sample, n, seed=seed))
        levels = grey_levels(run.config.dataset)
        if levels is not None:  # dequantised pixels k + u: the image (k + u) / L in [0, 1]
            x = np.clip(x / levels, 0.0, 1.0)
        return x

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        """Images: one PNG grid; 2-D points: their histogram beside the test data's."""
        if grey_levels(run.config.dataset) is not None:
            return super().save_samples(run, samples, path)
        return plots.save_samples_2d(samples, run.data.test, path)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        paths = []
        images = grey_levels(run.config.dataset) is not None
        if images:
            paths.append(
                plots.save_image_grid(
                    self.sample(run, 64), out_dir / "samples.png", run.data.image_shape
                )
            )
        else:
            paths += self._pictures_2d(run, out_dir)
        paths.append(
            plots.save_training_curves(
                run.directory / "metrics.jsonl",
                out_dir / "curves.png",
                bits_per_dim=run.data.x_dim if images else None,
            )
        )
        return paths

    def _pictures_2d(self, run: Run, out_dir: Path) -> list[Path]:
        inference = run.backend.inference
        data = run.data.test
        xs, ys, grid = plots.density_grid(data)
        log_p = np.asarray(inference.compute(run.model.log_prob, grid.astype(np.float32)))
        samples = self.sample(run, len(data))
        path = inference.draw(run.model.sample_path, 2000, seed=0)
        return [
            plots.save_density_2d(
                xs, ys, log_p.reshape(len(ys), len(xs)), data, out_dir / "density.png"
            ),
            plots.save_samples_2d(samples, data, out_dir / "samples_2d.png"),
            plots.save_flow_path([np.asarray(p) for p in path], out_dir / "flow_path.png"),
        ]


FLOW = register(FlowRecipe())
