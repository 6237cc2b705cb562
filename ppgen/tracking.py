"""TensorBoard tracking: a run's per-epoch metrics and pictures as TensorBoard event files.

``metrics.jsonl`` stays the run's record; this optional writer mirrors it for TensorBoard
(``pip install 'ppgen[tensorboard]'``). It writes with tensorboardX, which is pure Python,
and is read by TensorBoard itself: ``tensorboard --logdir <run>/tensorboard``.

An epoch's record becomes scalars tagged by the data set they were measured on
(``valid_elbo`` -> ``valid/elbo``, ``loss`` -> ``train/loss``), so TensorBoard shows one
section per set; a picture written by ``ppgen.plots`` becomes an image summary.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ppgen.errors import ConfigError

__all__ = ["TensorBoardWriter", "scalar_tags"]

#: Data sets a record's keys may start with (``valid_loss``), besides ``train``.
EVAL_SETS = ("valid", "test")


def scalar_tags(
    record: Mapping[str, Any], eval_sets: Sequence[str] = EVAL_SETS
) -> dict[str, float]:
    """TensorBoard tags and values for one epoch's record, as written to ``metrics.jsonl``.

    A key ``<set>_<name>`` with ``<set>`` in ``eval_sets`` or ``"train"`` is tagged
    ``<set>/<name>``; every other key is a training metric, ``train/<key>``: ``valid_loss`` ->
    ``valid/loss``, ``test_error`` -> ``test/error``, ``train_seconds`` -> ``train/seconds``,
    ``loss_critic`` -> ``train/loss_critic``. ``epoch`` is the step, not a scalar.

    Args:
        record: One epoch's metrics, e.g. ``{"epoch": 3, "loss": 92.1, "valid_elbo": -95.0}``.
        eval_sets: Names of the evaluated data sets (the driver's ``valid`` and ``monitor``).

    Returns:
        ``{tag: value}`` for every finite real number of the record (bools, strings, None,
        NaN and infinities are left out: a diverged epoch still writes its other scalars).
    """
    # Longest name first, so a set "test_big" takes "test_big_error" before "test" does.
    prefixes = sorted((f"{s}_" for s in ("train", *eval_sets)), key=len, reverse=True)
    tags = {}
    for key, value in record.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if not math.isfinite(value):
            continue
        prefix = next((p for p in prefixes if key.startswith(p) and key != p), None)
        tag = f"{prefix[:-1]}/{key[len(prefix) :]}" if prefix else f"train/{key}"
        tags[tag] = value
    return tags


class TensorBoardWriter:
    """Writes a run's epoch records and pictures as TensorBoard events in ``log_dir``.

    Each writer opens one new event file, ``events.out.tfevents.<time>.<host>.<ns>``: the
    nanosecond suffix keeps two writers started in the same second (a quick resume) from
    overwriting each other and sorts them in the order TensorBoard must read them. Every
    call is flushed to disk: TensorBoard follows a run live, and a killed run keeps what it
    logged.

    Args:
        log_dir: Directory of the event files (created if missing), e.g. ``<run>/tensorboard``.
        purge_step: On resume, the first step that is written again. TensorBoard then hides
            every event of the earlier files at this step or later (tensorboardX writes a
            ``SessionLog.START`` at this step), so epochs re-run after the last checkpoint
            show once, with their new values.
        eval_sets: Names of the evaluated data sets, for ``scalar_tags``.

    Raises:
        ConfigError: tensorboardX cannot be imported (the message says how to install it).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike,
        *,
        purge_step: int | None = None,
        eval_sets: Sequence[str] = EVAL_SETS,
    ) -> None:
        try:
            # Imported here: ppgen runs without the extra unless TensorBoard is asked for.
            from tensorboardX import SummaryWriter
        except ImportError as err:
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            raise ConfigError(
                f"TensorBoard logging needs tensorboardX, which failed to import ({reason}); "
                "install it with: pip install 'ppgen[tensorboard]'"
            ) from err
        self.log_dir = Path(log_dir)
        self.eval_sets = tuple(eval_sets)
        self._writer = SummaryWriter(
            str(self.log_dir), purge_step=purge_step, filename_suffix=f".{time.time_ns()}"
        )

    def scalars(self, record: Mapping[str, Any], step: int) -> None:
        """Write one epoch's record (see ``scalar_tags``) at global step ``step``.

        Args:
            record: The epoch's metrics as written to ``metrics.jsonl``.
            step: The global step; the driver passes the 1-based epoch number.
        """
        writer = self._open()
        for tag, value in scalar_tags(record, self.eval_sets).items():
            writer.add_scalar(tag, value, step)
        writer.flush()

    def image(self, tag: str, path: str | os.PathLike, step: int) -> None:
        """Write the PNG at ``path`` (e.g. from ``ppgen.plots``) as image ``tag`` at ``step``.

        Args:
            tag: Name of the picture in TensorBoard, e.g. ``"samples"``.
            path: A PNG file; its pixels are written unchanged (grey, RGB or RGBA).
            step: The global step; the driver passes the 1-based epoch number.
        """
        writer = self._open()
        # Imported here: matplotlib is only needed once a picture is written.
        from matplotlib.image import imread

        pixels = imread(Path(path))  # (H, W) or (H, W, C), float32 in [0, 1] for a PNG
        writer.add_image(tag, pixels, step, dataformats="HW" if pixels.ndim == 2 else "HWC")
        writer.flush()

    def close(self) -> None:
        """Flush and close the event file; closing twice is harmless."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self):
        # tensorboardX would silently open a new file (and purge again) after close.
        if self._writer is None:
            raise ValueError(f"the TensorBoard writer of {self.log_dir} is closed")
        return self._writer
