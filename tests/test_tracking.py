"""TensorBoard tracking, read back with TensorBoard's own EventAccumulator."""

import builtins
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from tensorboard.backend.event_processing import event_accumulator

from ppgen.errors import ConfigError
from ppgen.plots import save_image_grid
from ppgen.tracking import TensorBoardWriter, scalar_tags


def read_events(log_dir):
    """Every scalar and image event TensorBoard loads from ``log_dir`` (nothing sampled away)."""
    acc = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0}
    )
    acc.Reload()
    scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    images = {t: acc.Images(t) for t in acc.Tags()["images"]}
    return scalars, images


def f32(x):
    """TensorBoard stores a scalar as float32 (``simple_value``): compare exactly to that."""
    return float(np.float32(x))


def test_records_and_a_picture_read_back_exactly(tmp_path):
    records = [
        {"epoch": 0, "loss": 120.5, "finite": 1.0, "lr": 1e-3, "train_seconds": 2.25},
        {"epoch": 1, "loss": 101.0, "finite": 1.0, "lr": 5e-4, "train_seconds": 2.0,
         "valid_loss": 99.5, "valid_elbo": -99.5, "valid_error": 0.125, "test_error": 0.25,
         "loss_generator": 0.7, "loss_critic": -1.3},
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    png = save_image_grid(rng.uniform(size=(6, 28 * 28)), tmp_path / "samples.png", (28, 28))
    log_dir = tmp_path / "tensorboard"
    with TensorBoardWriter(log_dir) as writer:
        for record in records:
            writer.scalars(record, step=record["epoch"] + 1)
        writer.image("samples", png, step=2)

    scalars, images = read_events(log_dir)
    expected = {
        "train/loss": [(1, f32(120.5)), (2, f32(101.0))],
        "train/finite": [(1, 1.0), (2, 1.0)],
        "train/lr": [(1, f32(1e-3)), (2, f32(5e-4))],
        "train/seconds": [(1, 2.25), (2, 2.0)],
        "valid/loss": [(2, 99.5)],
        "valid/elbo": [(2, -99.5)],
        "valid/error": [(2, 0.125)],
        "test/error": [(2, 0.25)],
        "train/loss_generator": [(2, f32(0.7))],
        "train/loss_critic": [(2, f32(-1.3))],
    }
    assert scalars == expected
    assert list(images) == ["samples"]
    (event,) = images["samples"]
    original = imread(png)  # RGBA, as plt.imsave writes it
    assert event.step == 2
    assert (event.height, event.width) == original.shape[:2]
    # Every pixel survives the round trip through the event file (PNG is lossless).
    np.testing.assert_array_equal(imread(io.BytesIO(event.encoded_image_string)), original)


def test_purge_step_drops_the_stale_epochs_of_a_resumed_run(tmp_path):
    log_dir = tmp_path / "tensorboard"
    png = save_image_grid(np.zeros((1, 4)), tmp_path / "grid.png", (2, 2))
    # The first run logs epochs 1-5 and a picture at 5, but its last checkpoint is epoch 3.
    with TensorBoardWriter(log_dir) as writer:
        for step in range(1, 6):
            writer.scalars({"epoch": step - 1, "loss": step}, step)
        writer.image("samples", png, 5)
    # The resumed run (often within the same second) re-runs epochs 4 and 5, then 6.
    with TensorBoardWriter(log_dir, purge_step=4) as writer:
        for step in range(4, 7):
            writer.scalars({"epoch": step - 1, "loss": 10 * step}, step)

    scalars, images = read_events(log_dir)
    assert scalars == {"train/loss": [(1, 1), (2, 2), (3, 3), (4, 40), (5, 50), (6, 60)]}
    assert images == {"samples": []}  # epoch 5's picture belonged to the stale run


def test_without_purge_step_the_stale_epochs_stay(tmp_path):
    # The control of the test above: TensorBoard does not drop them by itself.
    log_dir = tmp_path / "tensorboard"
    for steps, scale in ((range(1, 4), 1), (range(2, 4), 10)):
        with TensorBoardWriter(log_dir) as writer:
            for step in steps:
                writer.scalars({"loss": scale * step}, step)
    scalars, _ = read_events(log_dir)
    assert scalars == {"train/loss": [(1, 1), (2, 2), (3, 3), (2, 20), (3, 30)]}


def test_non_finite_and_non_numeric_entries_are_skipped(tmp_path):
    record = {
        "epoch": 4,
        "loss": math.nan,  # a diverged epoch: its other scalars are still written
        "valid_loss": math.inf,
        "test_elbo": -math.inf,
        "lr": 1e-3,
        "steps": 600,
        "valid_error": np.float32(0.5),
        "finite": False,
        "backend": "numpyro",
        "note": None,
        "shape": [1, 2],
    }
    expected = {"train/lr": 1e-3, "train/steps": 600.0, "valid/error": 0.5}
    assert scalar_tags(record) == expected
    with TensorBoardWriter(tmp_path) as writer:
        writer.scalars(record, step=5)
    scalars, _ = read_events(tmp_path)
    assert scalars == {tag: [(5, f32(value))] for tag, value in expected.items()}


@pytest.mark.parametrize(
    "key, eval_sets, tag",
    [
        ("loss", ("valid", "test"), "train/loss"),
        ("train_seconds", ("valid", "test"), "train/seconds"),
        ("valid_elbo", ("valid", "test"), "valid/elbo"),
        ("valid_", ("valid", "test"), "train/valid_"),
        ("validity", ("valid", "test"), "train/validity"),
        ("test_error", ("valid",), "train/test_error"),
        ("test_big_error", ("valid", "test", "test_big"), "test_big/error"),
        ("test_error", ("valid", "test", "test_big"), "test/error"),
    ],
)
def test_tags_group_by_data_set(key, eval_sets, tag):
    assert scalar_tags({key: 1.0}, eval_sets) == {tag: 1.0}


def test_a_closed_writer_refuses_to_write(tmp_path):
    writer = TensorBoardWriter(tmp_path)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.scalars({"loss": 1.0}, 1)


@pytest.mark.parametrize(
    "error",
    [
        ModuleNotFoundError("No module named 'tensorboardX'", name="tensorboardX"),
        ImportError("cannot import name 'builder' from 'google.protobuf.internal'\nsee docs"),
    ],
)
def test_missing_tensorboardx_is_a_one_line_config_error(tmp_path, monkeypatch, error):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tensorboardX":
            raise error
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError) as info:
        TensorBoardWriter(tmp_path / "tensorboard")
    message = str(info.value)
    assert "\n" not in message
    assert str(error).splitlines()[0] in message
    assert message.endswith("pip install 'ppgen[tensorboard]'")
    assert not (tmp_path / "tensorboard").exists()


def test_importing_the_module_needs_neither_tensorboardx_nor_matplotlib():
    code = (
        "import sys, ppgen.tracking; "
        "print(sorted(m for m in ('tensorboardX', 'matplotlib') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]  # this checkout's ppgen, not an installed one
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
