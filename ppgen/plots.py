"""Pictures of results: image grids, reconstructions, training curves (matplotlib, PNG)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: ppgen never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    "tile_images",
    "save_image_grid",
    "save_reconstructions",
    "save_training_curves",
    "save_posterior_comparison",
    "save_confusion_matrix",
]


def tile_images(
    images: np.ndarray, image_shape: Sequence[int], ncol: int | None = None, pad: int = 1
) -> np.ndarray:
    """Tile ``images`` (n, H*W) or (n, H, W) into one 2-D array with ``pad`` pixels between."""
    h, w = image_shape
    images = np.asarray(images, dtype=np.float32).reshape(-1, h, w)
    n = len(images)
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    canvas = np.ones((nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        canvas[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = img
    return canvas


def save_image_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    image_shape: Sequence[int],
    ncol: int | None = None,
    scale: int = 3,
) -> Path:
    """Save images in [0, 1] as one grey PNG grid (upscaled ``scale`` times); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.clip(tile_images(images, image_shape, ncol), 0.0, 1.0)
    grid = np.kron(grid, np.ones((scale, scale), dtype=np.float32))
    plt.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
    return path


def save_reconstructions(
    x: np.ndarray,
    x_rec: np.ndarray,
    path: str | os.PathLike,
    image_shape: Sequence[int],
    ncol: int = 16,
) -> Path:
    """Save originals and reconstructions as alternating rows of ``ncol`` images."""
    n = (min(len(x), len(x_rec)) // ncol) * ncol or min(len(x), len(x_rec))
    ncol = min(ncol, n)
    rows = []
    for start in range(0, n, ncol):
        rows += [x[start : start + ncol], x_rec[start : start + ncol]]
    return save_image_grid(np.concatenate(rows), path, image_shape, ncol=ncol)


def save_training_curves(
    metrics_jsonl: str | os.PathLike,
    path: str | os.PathLike,
    keys: Sequence[str] = ("loss", "valid_loss"),
    right_keys: Sequence[str] = (),
    right_label: str = "",
) -> Path:
    """Plot per-epoch metrics from a run's ``metrics.jsonl`` (one line per epoch).

    ``keys`` are in nats per example; ``right_keys`` (e.g. ``"valid_error"``) go on a second
    y-axis labelled ``right_label``.
    """
    records = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        pts = [(r["epoch"] + 1, r[key]) for r in records if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key, marker="." if len(pts) < 30 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if right_keys:
        right = ax.twinx()
        for i, key in enumerate(right_keys):
            pts = [(r["epoch"] + 1, r[key]) for r in records if key in r]
            if pts:
                right.plot(*zip(*pts, strict=True), label=key, color=f"C{len(keys) + i}")
        right.set_ylabel(right_label)
        more = right.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels)
    return _save(fig, path, dpi=120)


def save_posterior_comparison(
    exact: np.ndarray,
    approx: np.ndarray,
    path: str | os.PathLike,
    dims: tuple[int, int] = (0, 1),
    labels=("MCMC", "guide"),
) -> Path:
    """Scatter two latent dimensions of two posterior sample sets, one panel per example.

    Args:
        exact: Draws (S, batch, latent), e.g. NUTS.
        approx: Draws (S', batch, latent), e.g. the amortized guide.
    """
    batch = exact.shape[1]
    fig, axes = plt.subplots(1, batch, figsize=(3 * batch, 3), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for draws, label, color in ((exact, labels[0], "C0"), (approx, labels[1], "C1")):
            ax.scatter(
                draws[:, i, dims[0]], draws[:, i, dims[1]], s=3, alpha=0.3, c=color, label=label
            )
        ax.set_title(f"example {i}")
        ax.set_xlabel(f"z[{dims[0]}]")
        ax.set_ylabel(f"z[{dims[1]}]")
    axes[0][0].legend(markerscale=4)
    return _save(fig, path)


def save_confusion_matrix(confusion: np.ndarray, path: str | os.PathLike, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG with counts."""
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay(np.asarray(confusion)).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
