"""``infogan``: a GAN whose generator's codes stay readable in its samples (Chen et al. 2016).

The generator draws ``x = G(z, c)`` from noise ``z`` and codes ``c`` (``--categorical``
sizes of categorical codes, ``--continuous`` uniform ones; ``InfoGenerator``), the guide is
the recognition network ``q(c | x)``, and the objective (``InfoGAN``) is the ``gan``
recipe's game with the generator's loss lowered by ``--info-weight`` times the
mutual-information bound ``L_I = E[log q(c | x)] + H(c)``. Everything else (data, critic,
the two players' Adam, validation and ``ppgen eval``: modes on the 2-D sets, FID on images)
is the ``gan`` recipe's (:mod:`ppgen.recipes.likelihood_free`); the pictures add one
traversal per code, ``traversals_<code>.png``: rows of fixed ``z`` (and other codes), the
code stepped through its categories, or from -2 to 2 (past its prior's [-1, 1], as the
paper's figures do) for a continuous one.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen import plots
from ppgen.errors import ConfigError
from ppgen.recipes.base import Backend, FitData, non_negative_float, non_negative_int, option
from ppgen.recipes.likelihood_free import GANOptions, GANRecipe, is_images
from ppgen.recipes.registry import register

if TYPE_CHECKING:
    from ppgen.config import RunConfig
    from ppgen.runs import Run

__all__ = ["InfoGANOptions", "InfoGANRecipe", "traversal_codes"]

#: Columns of a continuous code's traversal, evenly spaced on [-2, 2].
CONTINUOUS_STEPS = 10
#: Rows (fixed noise) of a traversal: a grid of images, or paths of 2-D points.
TRAVERSAL_ROWS = {"images": 8, "points": 100}


def _code_sizes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated sizes of categorical codes, e.g. ``10`` or
    ``10,3``; the empty string: none."""
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated code sizes like 10 or 10,3, got {text!r}"
        ) from None
    if any(k < 2 for k in sizes):
        raise argparse.ArgumentTypeError(f"a categorical code has >= 2 categories, got {text!r}")
    return sizes


@dataclass(frozen=True)
class InfoGANOptions(GANOptions):
    """Settings of ``infogan``: the ``gan`` recipe's and the codes."""

    categorical: tuple[int, ...] = option(
        (10,), "sizes of the categorical codes, comma-separated (e.g. 10 or 10,3; empty: none)",
        parse=_code_sizes,
    )  # fmt: skip
    continuous: int = option(2, "number of continuous codes, each U(-1, 1)",
                             parse=non_negative_int)  # fmt: skip
    info_weight: float = option(
        1.0, "lambda, the weight of the mutual-information bound L_I in the generator's loss",
        parse=non_negative_float,
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.categorical, tuple) or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 2 for k in self.categorical
        ):
            raise ConfigError(
                f"categorical must be sizes >= 2 of categorical codes, got {self.categorical!r}"
            )
        if not self.categorical and not self.continuous:
            raise ConfigError(
                "infogan needs at least one code: --categorical 10 and/or --continuous 2"
            )
        if self.info_weight < 0:
            raise ConfigError(f"--info-weight must be >= 0, got {self.info_weight}")


def traversal_codes(
    codes: dict[str, int | None], name: str, rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The codes of a traversal of ``name``: its values along the columns (each category of
    a categorical code, ``CONTINUOUS_STEPS`` steps on [-2, 2] of a continuous one), every
    other code drawn from its prior once per row and held along it.

    Args:
        codes: The generator's code sites, name -> categories (``None``: continuous).
        name: The code traversed.
        rows: Rows of the traversal.
        rng: The generator of the held codes.

    Returns:
        ``(values, grid)``: the column values ``(columns,)`` and every code ``(rows,
        columns)`` by name (integers for the categorical ones).
    """
    k = codes[name]
    values = np.arange(k) if k is not None else np.linspace(-2.0, 2.0, CONTINUOUS_STEPS)
    grid = {}
    for other, size in codes.items():
        if other == name:
            grid[other] = np.tile(values, (rows, 1))
        elif size is None:
            grid[other] = np.repeat(rng.uniform(-1.0, 1.0, (rows, 1)), len(values), axis=1)
        else:
            grid[other] = np.repeat(rng.integers(size, size=(rows, 1)), len(values), axis=1)
    return values, grid


class InfoGANRecipe(GANRecipe):
    """``infogan``: InfoGAN (Chen et al. 2016), a GAN with codes ``c`` in the generator and
    the recognition guide ``q(c | x)``, trained on the mutual-information bound too."""

    name = "infogan"
    help = "InfoGAN: a GAN whose generator codes c are kept readable in x (mutual information)"
    description = (
        "InfoGAN (Chen et al. 2016): the generator draws x = G(z, c) from noise z and codes c "
        "(--categorical, --continuous), a recognition guide q(c | x) reads the codes back, "
        "and the generator's loss is the GAN's minus --info-weight times the mutual-"
        "information bound L_I = E[log q(c | x)] + H(c). Pictures: one traversal per code."
    )
    options = InfoGANOptions
    defaults = {"dataset": "mnist", "lr": 2e-4, "batch_size": 64, "epochs": 20}

    def curve_keys(self, config: RunConfig) -> tuple[str, ...]:
        # the bound L_I per example (the trainer logs InfoGAN's reported entry), in nats
        return (*super().curve_keys(config), "mutual_information")

    def generator(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        arch, z_dim = o.resolved(config.dataset)
        return backend.models.InfoGenerator(
            (data.x_dim,), z_dim=z_dim, categorical=o.categorical, continuous=o.continuous,
            architecture=arch, hidden=o.channels if arch == "dcgan" else o.hidden,
            output="sigmoid" if is_images(config.dataset) else "identity", seed=config.seed,
        )  # fmt: skip

    def objective(self, config: RunConfig, data: FitData, backend: Backend) -> Any:
        o = config.options
        return backend.inference.InfoGAN(
            self.critic(config, data, backend), loss=o.loss, info_weight=o.info_weight,
            gradient_penalty=o.penalty, n_critic=o.n_critic,
        )  # fmt: skip

    def pictures(self, run: Run, out_dir: Path) -> list[Path]:
        """The ``gan`` recipe's pictures and ``traversals_<code>.png`` for every code."""
        return [*super().pictures(run, out_dir), *self.traversals(run, Path(out_dir))]

    def traversals(self, run: Run, out_dir: Path) -> list[Path]:
        """One picture per code: rows of fixed noise ``z`` and other codes, the code stepped
        along the columns (:func:`traversal_codes`); an image grid on images, paths of 2-D
        points over the modes on the 2-D sets. The draws are seeded with the run's seed."""
        model, images = run.model, is_images(run.config.dataset)
        rows = TRAVERSAL_ROWS["images" if images else "points"]
        paths = []
        for i, name in enumerate(model.codes):
            rng = np.random.default_rng([run.config.seed, i])
            z = rng.standard_normal((rows, 1, model.z_dim))
            values, grid = traversal_codes(model.codes, name, rows, rng)
            x = np.asarray(run.backend.inference.compute(model.generate, z, **grid))
            path = out_dir / f"traversals_{name}.png"
            if images:
                flat = x.reshape(rows * len(values), -1)
                paths.append(plots.save_image_grid(flat, path, run.data.image_shape,
                                                   ncol=len(values)))  # fmt: skip
            else:
                paths.append(_traversal_2d(x, values, name, run.config.dataset, path))
        return paths


def _traversal_2d(x: np.ndarray, values: np.ndarray, name: str, dataset: str, path: Path) -> Path:
    """2-D samples ``x (rows, columns, 2)`` of a traversal: each row a grey path, its points
    coloured by the code's value, over the dataset's modes (3-sd circles)."""
    import matplotlib.pyplot as plt  # ppgen.plots has set the file-only backend

    from ppgen.data.toy import toy_modes

    centers, std = toy_modes(dataset)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for row in x:
        ax.plot(row[:, 0], row[:, 1], color="0.7", lw=0.5, zorder=1)
    colour = np.broadcast_to(values, x.shape[:2]).reshape(-1)
    categories = np.issubdtype(values.dtype, np.integer) and len(values) <= 10
    points = ax.scatter(x[..., 0].reshape(-1), x[..., 1].reshape(-1), c=colour, s=6,
                        cmap="tab10" if categories else "viridis", zorder=2)  # fmt: skip
    fig.colorbar(points, ax=ax, label=name)
    for c in centers:
        ax.add_patch(plt.Circle(tuple(c), 3 * std, fill=False, color="tab:red", lw=1))
    pad = 1.0 + 3 * std
    ax.set_xlim(centers[:, 0].min() - pad, centers[:, 0].max() + pad)
    ax.set_ylim(centers[:, 1].min() - pad, centers[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_title(f"traversal of {name}: {len(x)} rows of fixed z, {len(values)} values")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


INFOGAN = register(InfoGANRecipe())
