"""Pictures of results: image grids, reconstructions, training curves (matplotlib, PNG)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: ppgen never opens a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

__all__ = [
    "tile_images",
    "save_image_grid",
    "save_reconstructions",
    "save_training_curves",
    "save_curve_comparison",
    "save_posterior_comparison",
    "save_confusion_matrix",
    "density_grid",
    "save_density_2d",
    "save_samples_2d",
    "save_samples_over_modes",
    "save_flow_path",
    "save_spectrograms",
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
    bits_per_dim: int | None = None,
    unit: str = "nats per example",
) -> Path:
    """Plot per-epoch metrics from a run's ``metrics.jsonl`` (one line per epoch).

    ``keys`` are in ``unit`` (nats per training example; a family whose example is a window
    or segment says so, e.g. ``"nats per 128-character window"``); ``right_keys`` (e.g.
    ``"valid_error"``) go on a second y-axis labelled ``right_label``. ``bits_per_dim=D``
    (images of ``D`` pixels) adds a right axis reading the same curves in bits/dim,
    ``nats / (D log 2)``.
    """
    records = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        pts = [(r["epoch"] + 1, r[key]) for r in records if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key, marker="." if len(pts) < 30 else None)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, even for 2 of them
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if bits_per_dim is not None:
        per_bit = float(bits_per_dim) * math.log(2)
        bits = ax.secondary_yaxis("right", functions=(lambda v: v / per_bit, lambda b: b * per_bit))
        bits.set_ylabel("bits/dim")
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


def save_curve_comparison(
    curves: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike,
    ylabel: str,
    log_y: bool = False,
) -> Path:
    """One line per run, e.g. each benchmark run's validation FID by epoch.

    Args:
        curves: ``label -> values``, one value per epoch (epoch 1 first); ``None`` (or a
            non-finite value) where that epoch measured nothing: the line breaks there.
        path: The PNG written (its folder is created).
        ylabel: The values' name and unit.
        log_y: A logarithmic y-axis (for values that fall by orders of magnitude).

    Raises:
        ValueError: No curve with a finite value, or a value <= 0 on a logarithmic axis.
    """
    lines = {}
    for label, values in curves.items():
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        y[~np.isfinite(y)] = np.nan
        if np.isfinite(y).any():
            lines[label] = y
    if not lines:
        raise ValueError("no curve has a finite value to plot")
    if log_y and any((y[np.isfinite(y)] <= 0).any() for y in lines.values()):
        raise ValueError("log_y needs values > 0; plot these curves with log_y=False")
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, y in lines.items():
        ax.plot(np.arange(1, len(y) + 1), y, label=label, marker="." if len(y) < 30 else None)
    if log_y:
        ax.set_yscale("log")
        for axis_format in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_format(FormatStrFormatter("%g"))  # 40, not 4 x 10^1
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
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


def density_grid(
    data: np.ndarray, num: int = 200, margin: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``num x num`` grid over the box of 2-D ``data`` (each side widened by ``margin``
    of its range): ``(xs (num,), ys (num,), points (num * num, 2))``, ``points`` row-major
    with ``y`` the slow axis, so ``f(points).reshape(num, num)`` is an image (rows = y)."""
    data = np.asarray(data, dtype=np.float64)
    lo, hi = data.min(axis=0), data.max(axis=0)
    pad = margin * np.maximum(hi - lo, 1e-6)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], num)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], num)
    gx, gy = np.meshgrid(xs, ys)
    return xs, ys, np.stack([gx.ravel(), gy.ravel()], axis=1)


def _hist_2d(ax: plt.Axes, points: np.ndarray, xs: np.ndarray, ys: np.ndarray, title: str):
    ax.hist2d(points[:, 0], points[:, 1], bins=100, range=[xs[[0, -1]], ys[[0, -1]]],
              cmap="viridis")  # fmt: skip
    ax.set_title(title)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def save_density_2d(
    xs: np.ndarray, ys: np.ndarray, log_p: np.ndarray, data: np.ndarray, path: str | os.PathLike
) -> Path:
    """A learned 2-D density as a heat map of ``p = exp(log_p)`` on the grid ``xs x ys``
    (``log_p`` of shape ``(len(ys), len(xs))``, nats) beside a histogram of ``data (N, 2)``
    on the same box (:func:`density_grid`)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    left.imshow(
        np.exp(np.asarray(log_p, dtype=np.float64)),
        origin="lower",
        extent=(xs[0], xs[-1], ys[0], ys[-1]),
        cmap="viridis",
    )
    left.set_title("learned density")
    left.set_xticks([])
    left.set_yticks([])
    _hist_2d(right, np.asarray(data), xs, ys, f"data ({len(data)} points)")
    return _save(fig, path)


def save_samples_2d(samples: np.ndarray, data: np.ndarray, path: str | os.PathLike) -> Path:
    """Histograms of a model's 2-D ``samples`` and of ``data``, side by side on the data's
    box."""
    xs, ys, _ = density_grid(data, num=2)
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    _hist_2d(left, np.asarray(samples), xs, ys, f"samples ({len(samples)})")
    _hist_2d(right, np.asarray(data), xs, ys, f"data ({len(data)} points)")
    return _save(fig, path)


def save_picture_row(
    pictures: Sequence[str | os.PathLike], labels: Sequence[str], path: str | os.PathLike
) -> Path:
    """Saved pictures (PNG files) side by side in one figure, each titled by its label (e.g.
    sample grids at several epochs of training); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(pictures), figsize=(3 * len(pictures), 3.2), squeeze=False)
    for ax, picture, label in zip(axes[0], pictures, labels, strict=True):
        ax.imshow(plt.imread(picture))
        ax.set_title(label, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_samples_over_modes(
    samples: np.ndarray, centers: np.ndarray, radius: float, path: str | os.PathLike
) -> Path:
    """A generator's 2-D ``samples`` ``(n, 2)`` as dots over the mixture's modes: a circle of
    ``radius`` (three standard deviations: the high-quality zone of VEEGAN and PacGAN)
    around each centre ``(K, 2)``, so collapsed and missed modes show at a glance."""
    samples, centers = np.asarray(samples), np.asarray(centers)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, color="tab:blue", label="samples")
    for c in centers:
        ax.add_patch(plt.Circle(tuple(c), radius, fill=False, color="tab:red", lw=1))
    ax.scatter(centers[:, 0], centers[:, 1], marker="x", s=20, color="tab:red", label="modes")
    pad = 1.0 + radius
    ax.set_xlim(centers[:, 0].min() - pad, centers[:, 0].max() + pad)
    ax.set_ylim(centers[:, 1].min() - pad, centers[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_title(f"{len(samples)} samples over the {len(centers)} modes (3-sd circles)")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def save_flow_path(path_points: Sequence[np.ndarray], path: str | os.PathLike) -> Path:
    """2-D samples on their way through a flow, one panel per layer: the base draws, then
    their images after each transform (``path_points[i]`` of shape ``(n, 2)``). Points are
    coloured by the angle of their base draw, so each panel shows how the layers so far
    have moved the noise."""
    path_points = [np.asarray(p, dtype=np.float64) for p in path_points]
    z = path_points[0]
    colour = np.arctan2(z[:, 1], z[:, 0])
    n = len(path_points)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.6), squeeze=False)
    for i, (ax, points) in enumerate(zip(axes[0], path_points, strict=True)):
        ax.scatter(points[:, 0], points[:, 1], s=1, c=colour, cmap="hsv", alpha=0.6)
        ax.set_title("base noise" if i == 0 else f"after layer {i}", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, dpi=100)


def save_receptive_fields(
    maps: Sequence[np.ndarray],
    pixels: Sequence[tuple[int, int]],
    image_shape: Sequence[int],
    path: str | os.PathLike,
) -> Path:
    """One panel per pixel of an autoregressive image model: the inputs its conditional
    depends on (grey), the pixel itself (red) and the pixels after it in raster order
    (hatched light), so the autoregressive order, and a PixelCNN's blind spot (earlier
    pixels above and to the right that it never sees), can be read off.

    Args:
        maps: Per pixel, an ``(H, W)`` array, nonzero where the pixel depends on the input.
        pixels: The ``(row, col)`` of each map's pixel.
        image_shape: ``(H, W)``.
        path: The PNG to write.
    """
    h, w = image_shape
    fig, axes = plt.subplots(1, len(maps), figsize=(2.8 * len(maps), 3.0), squeeze=False)
    for ax, dep, (r, c) in zip(axes[0], maps, pixels, strict=True):
        rgb = np.ones((h, w, 3))
        later = np.arange(h * w).reshape(h, w) > r * w + c
        rgb[later] = (0.93, 0.93, 1.0)  # after the pixel in raster order
        rgb[np.asarray(dep).reshape(h, w) != 0] = (0.35, 0.35, 0.35)
        rgb[r, c] = (0.85, 0.1, 0.1)
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"pixel ({r}, {c}): {int(np.count_nonzero(dep))} inputs", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path, dpi=100)


def save_spectrograms(
    clips: Sequence[np.ndarray],
    titles: Sequence[str],
    rate: int,
    path: str | os.PathLike,
    nfft: int = 512,
) -> Path:
    """Spectrograms of audio clips side by side (matplotlib's ``specgram``: a Hann window of
    ``nfft`` samples, 75% overlap, power in dB), one panel per clip on a shared frequency
    axis, e.g. a generated clip beside a real one.

    Args:
        clips: Float samples in [-1, 1], each ``(T_i,)`` with ``T_i > nfft``.
        titles: One title per clip.
        rate: Samples per second (Hz).
        path: The PNG to write.
        nfft: Samples per analysis window (32 ms at 16 kHz).
    """
    fig, axes = plt.subplots(
        1, len(clips), figsize=(4.5 * len(clips), 3.6), squeeze=False, sharey=True
    )
    images, peak = [], -np.inf
    for ax, clip, title in zip(axes[0], clips, titles, strict=True):
        clip = np.asarray(clip, dtype=np.float64)
        power, _, _, image = ax.specgram(
            clip, NFFT=nfft, Fs=rate, noverlap=3 * nfft // 4, window=np.hanning(nfft),
            cmap="magma", scale="dB",
        )  # fmt: skip
        images.append(image)
        peak = max(peak, 10 * np.log10(max(float(power.max()), 1e-30)))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (s)")
    for image in images:  # one colour scale: the top 80 dB of all the panels
        image.set_clim(peak - 80, peak)
    axes[0][0].set_ylabel("frequency (Hz)")
    return _save(fig, path, dpi=110)


def _save(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (creating its folder) and close it."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
