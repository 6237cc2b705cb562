"""Autoregressive image models: ``fvsbn``, ``nade``, ``made`` and ``pixelcnn``, fitted by exact
maximum likelihood.

Each is ``AutoregressiveDensity(network, head)`` (``ppgen.models.{pyro,numpyro}.ar``): the
network scores every pixel's conditional ``p(x_i | x_<i)`` in one masked pass and the head
is the pixel's distribution. The ordinary trainer and the ELBO fit it (with no latent site,
the ELBO is the exact log-likelihood), and ``ppgen eval`` reports the exact test NLL.

- ``fvsbn``: the fully visible sigmoid belief net, one logistic regression per pixel on the
  pixels before it (Frey 1998; Bengio & Bengio 2000).
- ``nade``: NADE (Larochelle & Murray 2011), shared weights, O(DH).
- ``made``: MADE (Germain et al. 2015): a masked MLP; ``--masks K`` trains order- and
  connectivity-agnostically (a mask set per minibatch; ``--agnostic connectivity`` keeps the
  raster order and draws only the hidden connectivity) and evaluates the ensemble
  ``log mean_k p_k(x)`` over the ``K`` sets; the outputs also read the earlier pixels
  through direct connections (``--direct output``, the default: the setting of Germain et
  al.'s MNIST figures; ``--direct none`` for the plain masked MLP).
- ``pixelcnn``: PixelCNN (van den Oord et al. 2016a, masked convolutions type A/B) or Gated
  PixelCNN (van den Oord et al. 2016b, ``--variant gated``: vertical and horizontal stacks,
  no blind spot, optionally class-conditional), on binarized pixels (Bernoulli) or on the
  8-bit grey levels (``--likelihood categorical``: 256-way softmax;
  ``logistic_mixture``: PixelCNN++'s discretized logistic mixture).

Binarized data: ``--binarize static`` (default: one fixed Bernoulli draw of the grey MNIST
with the run's seed, the binarization of the papers' "static binarized MNIST" in spirit;
Larochelle & Murray's exact file is not shipped) or ``dynamic`` (fresh draws every step).
Validation and test images are binarized once with seed 0. Units: nats per image and
bits/dim (``NLL / (D log 2)``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import data as ppdata
from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.metrics import logmeanexp, summarize_nll
from ppgen.models.masks import AGNOSTIC
from ppgen.recipes.base import (
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
    option,
    positive_int,
    refuse_stand_in,
)
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = [
    "ARImageRecipe",
    "FVSBNOptions",
    "MADEOptions",
    "NADEOptions",
    "PixelCNNOptions",
    "receptive_fields",
]

LIKELIHOODS = ("bernoulli", "categorical", "logistic_mixture")


@dataclass(frozen=True)
class BinaryImageOptions(Options):
    """What every model of binarized pixels takes."""

    binarize: str = option(
        "static",
        "static: one fixed Bernoulli draw of the grey images (default); dynamic: fresh "
        "draws every step",
        choices=("static", "dynamic"),
    )


@dataclass(frozen=True)
class FVSBNOptions(BinaryImageOptions):
    """Settings of ``fvsbn`` (it has no size: one logistic regression per pixel)."""


@dataclass(frozen=True)
class NADEOptions(BinaryImageOptions):
    """Settings of ``nade`` (Larochelle & Murray 2011 used 500 hidden units)."""

    hidden: int = option(500, "hidden units H", parse=positive_int)


DIRECT = ("output", "none")  # MADE's direct connections (Germain et al.'s "Output", "None")


@dataclass(frozen=True)
class MADEOptions(BinaryImageOptions, MADEDegrees):
    """Settings of ``made`` (Germain et al. 2015's MNIST model: one or two hidden layers of
    500 ReLU units; 32 mask sets for the ensemble)."""

    hidden: tuple[int, ...] = option((500,), "hidden layer widths, e.g. 500,500",
                                     parse=layer_sizes)  # fmt: skip
    masks: int = option(
        1, "mask sets K (order/connectivity-agnostic training; the test ensemble)",
        parse=positive_int,
    )  # fmt: skip
    agnostic: str = option(
        "order",
        "what mask sets 2..K draw: order (a new ordering and connectivity) or connectivity "
        "(new hidden connectivity, raster order kept)",
        choices=AGNOSTIC,
    )  # fmt: skip
    direct: str = option(
        "output",
        "direct input-to-output connections: output (Germain et al.'s MNIST setting: the "
        "outputs also read the earlier pixels directly) or none",
        choices=DIRECT,
    )  # fmt: skip

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Options:
        """As :meth:`MADEDegrees.from_json`, with ``direct`` ``"none"`` where it is absent
        (a run stored before the option existed had no direct connections)."""
        return super().from_json({"direct": "none", **raw})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.masks == 1 and self.agnostic != "order":
            raise ConfigError(
                f"--agnostic {self.agnostic} draws mask sets 2..K, and --masks is 1: give "
                "--masks K > 1 (Germain et al. used 32), or leave --agnostic out"
            )


@dataclass(frozen=True)
class PixelCNNOptions(BinaryImageOptions):
    """Settings of ``pixelcnn`` (defaults sized for a CPU: Gated PixelCNN, 32 channels, 7
    layers, binarized pixels)."""

    variant: str = option("gated", "pixelcnn (masked convolutions) or gated (two stacks)",
                          choices=("pixelcnn", "gated"))  # fmt: skip
    likelihood: str = option(
        "bernoulli",
        "bernoulli (binarized pixels), categorical (256-way softmax on grey levels) or "
        "logistic_mixture (PixelCNN++'s discretized logistics)",
        choices=LIKELIHOODS,
    )
    channels: int = option(32, "feature maps per layer", parse=positive_int)
    layers: int = option(7, "masked layers after the first", parse=positive_int)
    kernel_size: int = option(3, "kernel size of the masked convolutions (odd)",
                              parse=positive_int)  # fmt: skip
    components: int = option(5, "logistics in the mixture (logistic_mixture)", parse=positive_int)
    conditional: bool = option(False, "class-conditional (gated): the label in every gate")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"--kernel-size must be odd, got {self.kernel_size}")
        if self.conditional and self.variant != "gated":
            raise ConfigError("--conditional needs --variant gated (the gates take the label)")
        if self.likelihood != "bernoulli" and self.binarize != "static":
            raise ConfigError(
                f"--binarize {self.binarize} binarizes the pixels, and --likelihood "
                f"{self.likelihood} models the grey levels: leave --binarize out, or use "
                "--likelihood bernoulli"
            )
        if self.likelihood != "logistic_mixture" and self.components != 5:
            raise ConfigError(
                f"--components sizes the logistic mixture, and --likelihood is "
                f"{self.likelihood}: use --likelihood logistic_mixture, or leave --components out"
            )


def _levels(config: RunConfig) -> int | None:
    """Grey levels the model scores (``None``: binarized pixels)."""
    likelihood = getattr(config.options, "likelihood", "bernoulli")
    return None if likelihood == "bernoulli" else ppdata.GREY_LEVELS[config.dataset]


class ARImageRecipe(Recipe):
    """An autoregressive model of images, evaluated by the exact test NLL (nats per image,
    bits/dim)."""

    defaults = {"lr": 1e-3, "dataset": "mnist"}
    datasets = ppdata.IMAGE_DATASETS
    eval_flags = ("limit", "batch_size")
    eval_report = "the exact test NLL in nats per image and bits/dim"
    network = ""  # the class name in ppgen.models.<backend>
    max_samples = 1024  # the cached samplers hold every layer's activations of each image

    def network_name(self, config: RunConfig) -> str:
        """The network's class name in ``ppgen.models.<backend>``."""
        return self.network

    def __init__(self, name: str, network: str, options: type[Options], help: str) -> None:
        self.name, self.network, self.options, self.help = name, network, options, help
        self.description = help

    # -- data --------------------------------------------------------------------------------

    def prepare(self, config: RunConfig) -> FitData:
        levels = _levels(config)
        binarize = "none" if levels is not None else config.options.binarize
        splits = image_splits(config.dataset, config.train_split, binarize, config.seed)

        def rows(d: ppdata.Dataset | None) -> np.ndarray | None:
            if d is None or levels is None:
                return None if d is None else d.x
            return ppdata.pixel_levels(d.x, levels).astype(np.float32)

        conditional = getattr(config.options, "conditional", False)

        def with_labels(d: ppdata.Dataset | None) -> Any:
            x = rows(d)
            if x is None or not conditional:
                return x
            return x, np.eye(d.num_classes, dtype=np.float32)[d.y]

        train, valid, test = splits
        return FitData(
            train=with_labels(train),
            valid=with_labels(valid),
            test=with_labels(test),
            num_data=len(train),
            image_shape=test.image_shape,
            num_classes=test.num_classes if conditional else None,
        )

    def shapes(self, config: RunConfig) -> FitData:
        """Placeholder images (zeros, float32 ``(2, H * W)``; with their one-hot labels
        for a class-conditional run), the dataset's image shape (:data:`IMAGE_SHAPES`)."""
        conditional = getattr(config.options, "conditional", False)
        data = image_stand_in(config, labels=conditional)
        return data if conditional else dataclasses.replace(data, num_classes=None)

    # -- model -------------------------------------------------------------------------------

    def head(self, config: RunConfig, backend: Backend) -> Any:
        """The pixel's distribution."""
        o, ar = config.options, backend.models.ar
        levels = _levels(config)
        if levels is None:
            return ar.Bernoulli()
        if o.likelihood == "categorical":
            return ar.Categorical(levels)
        return ar.DiscretizedLogisticMixture(o.components, levels)

    def net(self, config: RunConfig, data: FitData, head: Any, backend: Backend) -> Any:
        """The network of this family for ``data``'s images."""
        o, dim, seed = config.options, data.x_dim, config.seed
        cls = getattr(backend.models, self.network_name(config))
        if self.name == "fvsbn":
            return cls(dim, seed=seed)
        if self.name == "nade":
            return cls(dim, o.hidden, seed=seed)
        if self.name == "made":
            return cls(
                dim,
                o.hidden,
                head.num_params,
                seed=seed,
                num_masks=o.masks,
                agnostic=o.agnostic,
                degrees=o.degrees,
                direct=o.direct == "output",
            )
        kw = {
            "channels": o.channels,
            "layers": o.layers,
            "kernel_size": o.kernel_size,
            "num_params": head.num_params,
            "levels": _levels(config) or 2,
            "seed": seed,
        }
        if o.variant == "gated":
            kw["num_classes"] = data.num_classes
        return cls(data.image_shape, **kw)

    def build(self, config: RunConfig, data: FitData, backend: Backend) -> Built:
        head = self.head(config, backend)
        model = backend.models.AutoregressiveDensity(self.net(config, data, head, backend), head)
        dynamic = _levels(config) is None and config.options.binarize == "dynamic"
        transform = backend.inference.DynamicBinarization() if dynamic else None
        return exact_likelihood(config, data, backend, model, transform)

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(
        self,
        run: Run,
        *,
        limit: int | None = None,
        batch_size: int = 1000,
        progress: bool = True,
        **_: Any,
    ) -> dict[str, Any]:
        """Exact test NLL (nats per image) and bits/dim, through ppgen's estimator on the
        empty guide (one sample is exact).

        A MADE with ``K > 1`` mask sets reports the ensemble ``log mean_k p_k(x)``
        (Germain et al. 2015) as ``test_nll`` and, as ``test_nll_one_mask``, the mean over
        the sets of each set's exact NLL (what one set drawn at random scores, on average);
        both come from the same ``K`` passes over the test set (``MADE.log_prob_masks``).
        """
        test = run.data.test
        args = test if isinstance(test, tuple) else (test,)
        args = tuple(a[:limit] for a in args)
        t0 = time.perf_counter()
        extra = {}
        masks = getattr(run.model.net, "num_masks", 1)
        if masks > 1:  # MADE's test-time ensemble over its mask sets (Germain et al. 2015)
            each = np.concatenate(
                [
                    np.asarray(
                        run.backend.inference.compute(
                            self._mask_log_probs(run), *(a[i : i + batch_size] for a in args)
                        ),
                        dtype=np.float64,
                    )
                    for i in range(0, len(args[0]), batch_size)
                ],
                axis=1,
            )  # (K, n): log p_k(x) of every set k
            log_px = logmeanexp(each, axis=0)
            extra["test_nll_one_mask"] = float(-each.mean())
            extra["masks"] = masks
        else:
            log_px = exact_log_px(
                run, args if len(args) > 1 else args[0], batch_size=batch_size, progress=progress
            )
        summary = summarize_nll(log_px, args[0].shape[1])
        return {
            "test_nll": summary["nll"],
            "test_nll_stderr": summary["nll_stderr"],
            "test_bits_per_dim": summary["bits_per_dim"],
            "exact": True,
            "n": summary["n"],
            "epoch": run.epoch + 1,
            "seconds": time.perf_counter() - t0,
            **extra,
        }

    @staticmethod
    def _mask_log_probs(run: Run) -> Any:
        """``log p_k(x)``, ``(K, batch)``, of rows ``x`` (and a context) under each of MADE's
        ``K`` mask sets."""
        net, head = run.model.net, run.model.head

        def log_prob(x: Any, context: Any = None) -> Any:
            values = head.values(x)
            return net.log_prob_masks(values.reshape(len(values), *net.event_shape), head,
                                      context)  # fmt: skip

        return log_prob

    def summary(self, out: dict[str, Any]) -> str:
        masks = f", ensemble of {out['masks']} mask sets" if "masks" in out else ""
        return (
            f"exact test NLL {out['test_nll']:.4f} ± {out['test_nll_stderr']:.4f} nats "
            f"({out['test_bits_per_dim']:.4f} bits/dim{masks}); {out['n']} examples, epoch "
            f"{out['epoch']}, {out['seconds']:.0f} s"
        )

    # -- samples and pictures ----------------------------------------------------------------

    def _images(self, run: Run, x: np.ndarray) -> np.ndarray:
        """Model values as images in [0, 1]."""
        levels = _levels(run.config)
        x = np.asarray(x, dtype=np.float32)
        return x if levels is None else x / (levels - 1)

    def _context(self, run: Run, n: int) -> np.ndarray | None:
        if run.data.num_classes is None:
            return None
        labels = np.arange(n) % run.data.num_classes
        return np.eye(run.data.num_classes, dtype=np.float32)[labels]

    def sample(self, run: Run, n: int, seed: int = 0) -> np.ndarray:
        """``n`` images in [0, 1] from the cached sampler (class-conditional runs: labels
        ``0, 1, 2, ...`` in turn)."""
        context = self._context(run, n)
        x = run.backend.inference.draw(run.model.sample, n, context, seed=seed)
        return self._images(run, x)

    def completions(self, run: Run, n: int = 8, seed: int = 0) -> tuple[np.ndarray, ...]:
        """The top half of ``n`` test images given, the bottom half drawn in the network's
        order by its cached sampler (the same draws as the naive one for the same noise):
        ``(originals, given halves, completions)``, images in [0, 1].

        Raises:
            ConfigError: A network whose order does not start with the top half (a MADE
                mask set with a random order), or a run loaded without its data.
        """
        refuse_stand_in(run, "completing test images of")
        test = run.data.test
        x = (test[0] if isinstance(test, tuple) else test)[:n]
        context = None if not isinstance(test, tuple) else test[1][:n]
        net, head = run.model.net, run.model.head
        h, w = run.data.image_shape
        start = (h // 2) * w
        if sorted(net.order[:start]) != list(range(start)):
            raise ConfigError(
                f"{self.name}'s order does not generate the top half first; completion needs "
                "a raster order"
            )
        events = x.reshape(len(x), *net.event_shape)
        noise = np.random.default_rng(seed).uniform(
            1e-12, 1.0, (len(x), *net.event_shape, *head.noise_shape)
        )

        def draw(nz: Any, xx: Any, c: Any) -> Any:  # the cached sampler, given the top half
            if self.name == "pixelcnn":  # the top rows
                return net.sample(nz, head, c, prefix=xx[..., : h // 2, :])
            return net.sample(nz, head, c, prefix=(xx, start))  # the first `start` in order

        done = run.backend.inference.compute(draw, noise, events, context)
        given = x.copy()
        given[:, start:] = 0.0
        done = np.asarray(done).reshape(len(x), -1)
        return self._images(run, x), self._images(run, given), self._images(run, done)

    def save_samples(self, run: Run, samples: np.ndarray, path: Path) -> Path:
        return plots.save_image_grid(samples, path, run.data.image_shape)

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        out_dir = Path(out_dir)
        shape = run.data.image_shape
        paths = [plots.save_image_grid(self.sample(run, 64), out_dir / "samples.png", shape)]
        try:
            original, given, done = self.completions(run)
        except ConfigError:
            pass
        else:
            paths.append(
                plots.save_image_grid(
                    np.concatenate([given, done, original]),
                    out_dir / "completions.png",
                    shape,
                    ncol=len(original),
                )
            )
        pixels, maps = receptive_fields(run)
        paths.append(
            plots.save_receptive_fields(maps, pixels, shape, out_dir / "receptive_field.png")
        )
        paths.append(
            plots.save_training_curves(run.directory / "metrics.jsonl", out_dir / "curves.png")
        )
        return paths


def receptive_fields(run: Run, pixels: tuple[tuple[int, int], ...] | None = None):
    """Which input pixels the conditional of each of a few pixels depends on, measured on
    the trained network by changing every input pixel of one test image in turn (a flipped
    bit, or a grey level moved by half the range) and seeing which outputs move.

    Returns:
        ``(pixels, maps)``: the ``(row, col)`` pixels and, per pixel, an ``(H, W)`` map: 1
        where the output depends on that input, 0 elsewhere (the pixel itself is 0).
    """
    h, w = run.data.image_shape
    pixels = pixels or ((h // 2, w // 2), (h // 4, (3 * w) // 4), (h - 1, w // 3))
    test = run.data.test
    x = (test[0] if isinstance(test, tuple) else test)[:1]
    context = None if not isinstance(test, tuple) else np.repeat(test[1][:1], h * w + 1, 0)
    levels = _levels(run.config)
    flipped = np.repeat(x, h * w + 1, axis=0)
    idx = np.arange(h * w)
    if levels is None:
        flipped[idx + 1, idx] = 1.0 - flipped[idx + 1, idx]
    else:
        flipped[idx + 1, idx] = (flipped[idx + 1, idx] + levels // 2) % levels
    net = run.model.net
    events = flipped.reshape(len(flipped), *net.event_shape)
    out = run.backend.inference.compute(lambda a, c: net(a, c), events, context)
    out = np.asarray(out).reshape(len(flipped), h * w, -1)
    changed = np.any(out[1:] != out[0], axis=-1)  # [input j, output i]
    maps = [changed[:, r * w + c].reshape(h, w).astype(np.float32) for r, c in pixels]
    return pixels, maps


_HELP = {
    "fvsbn": "fully visible sigmoid belief net: a logistic regression per pixel",
    "nade": "NADE (Larochelle & Murray 2011): shared weights, exact likelihood",
    "made": "MADE (Germain et al. 2015): masked MLP, order-agnostic ensembles",
    "pixelcnn": "PixelCNN / Gated PixelCNN (van den Oord et al. 2016): masked convolutions",
}

FVSBN = register(ARImageRecipe("fvsbn", "FVSBN", FVSBNOptions, _HELP["fvsbn"]))
NADE = register(ARImageRecipe("nade", "NADE", NADEOptions, _HELP["nade"]))
MADE = register(ARImageRecipe("made", "MADE", MADEOptions, _HELP["made"]))


class PixelCNNRecipe(ARImageRecipe):
    """``pixelcnn``: the network class by ``--variant``."""

    def network_name(self, config: RunConfig) -> str:
        return "GatedPixelCNN" if config.options.variant == "gated" else "PixelCNN"

    def epoch_loop(self, config: RunConfig) -> str:
        return "steps"  # masked convolutions: see Recipe.epoch_loop


PIXELCNN = register(PixelCNNRecipe("pixelcnn", "PixelCNN", PixelCNNOptions, _HELP["pixelcnn"]))
