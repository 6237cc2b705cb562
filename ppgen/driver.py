"""The outer training driver, shared by both backends.

Epochs, evaluation every ``eval_every`` epochs, tqdm progress, one JSON line of metrics per
epoch in ``<run>/metrics.jsonl``, early stopping on the validation loss, atomic checkpoints,
exact resume, and a guard that stops on a NaN or infinite loss without touching the last
good checkpoint. It sees a backend only through the ``Trainer`` protocol below, which
``ppgen.inference.pyro.Trainer`` and ``ppgen.inference.numpyro.Trainer`` implement.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from tqdm.auto import tqdm

from ppgen.checkpoint import (
    RUN_META,
    claim_run_dir,
    load_checkpoint,
    save_checkpoint,
    write_atomic,
)
from ppgen.errors import CheckpointError, ConfigError, DivergenceError

__all__ = ["Trainer", "FitResult", "fit", "read_metrics"]


class Trainer(Protocol):
    """What the driver needs of a backend trainer (see docs/ARCHITECTURE.md)."""

    def init(self, seed: int, data: Any) -> Any: ...

    def train_epoch(self, state: Any, x: np.ndarray, epoch: int) -> tuple[Any, dict]: ...

    def evaluate(self, state: Any, x: np.ndarray) -> dict: ...

    def state_arrays(self, state: Any) -> tuple[dict[str, np.ndarray], dict]: ...

    def load_state_arrays(self, state: Any, arrays: dict[str, np.ndarray], meta: dict) -> Any: ...


class FitResult(NamedTuple):
    """What ``fit`` returns: the final state, per-epoch records, and the best epoch."""

    state: Any
    history: list[dict]
    best_epoch: int | None
    stopped_early: bool


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run (``metrics.jsonl``)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _truncate_metrics(path: Path, last_epoch: int) -> list[dict]:
    """Drop records of epochs after the checkpoint we resume from (they will be re-run)."""
    kept = [r for r in read_metrics(path.parent) if r["epoch"] <= last_epoch]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


_BOOK = {"epoch": int, "best_loss": float, "bad_evals": int}


def _check_book(book: Any, meta: dict, run_dir: Path) -> dict:
    """The driver's bookkeeping of a checkpoint, checked (it is read from state.json)."""
    ok = isinstance(book, dict) and all(
        isinstance(book.get(k), t) and not isinstance(book.get(k), bool) for k, t in _BOOK.items()
    )
    ok = ok and book["epoch"] == meta["epoch"] and isinstance(book.get("best_epoch"), int | None)
    if not ok:
        raise CheckpointError(
            f"the latest checkpoint in {run_dir} is damaged (its state.json's 'driver' entry "
            f"is {book!r}); it cannot be resumed"
        )
    return dict(book)


def fit(
    trainer: Trainer,
    x_train: np.ndarray,
    x_valid: np.ndarray | None = None,
    *,
    run_dir: str | os.PathLike,
    epochs: int,
    seed: int = 0,
    eval_every: int = 1,
    patience: int | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    time_limit: float | None = None,
    monitor: dict[str, Any] | None = None,
    tensorboard: bool = False,
) -> FitResult:
    """Train for ``epochs`` epochs with evaluation, checkpoints and early stopping.

    Args:
        trainer: A backend trainer (``ppgen.inference.{pyro,numpyro}.Trainer``).
        x_train: Training data, numpy (N, D), or whatever the trainer takes (a
            semi-supervised trainer takes ``(x, y)`` with ``y = -1`` where unlabelled).
        x_valid: Validation data for the ``valid_loss`` metric and early stopping: the
            trainer's ``evaluate`` reports ``"loss"`` (lower is better) or ``"elbo"``.
        run_dir: Where ``metrics.jsonl`` and ``checkpoints/`` go.
        epochs: Total number of epochs (a resumed run continues up to this number).
        seed: Seed of the whole run: initial weights and every epoch's randomness.
        eval_every: Evaluate on ``x_valid`` every this many epochs (and after the last).
        patience: Stop after this many evaluations without improvement (None: never).
        resume: Continue from the run's latest checkpoint instead of starting afresh.
        progress: Show a tqdm bar over epochs.
        on_epoch: Called with each epoch's record (e.g. to print or plot as it goes).
        time_limit: Stop after the epoch during which this many seconds (of this call)
            have passed; the run can be continued later with ``resume``.
        monitor: More data sets evaluated with the validation set, e.g. ``{"test": ...}``,
            recorded as ``test_<metric>``; they never influence early stopping or BEST.
        tensorboard: Also write every epoch's record as TensorBoard scalars under
            ``<run_dir>/tensorboard`` (:class:`ppgen.tracking.TensorBoardWriter`; a resumed
            run drops the events of the epochs it re-runs).

    In a data-parallel run (several processes; the trainer's ``is_main_process`` and
    ``any_process``), every process trains and evaluates, process 0 alone writes metrics,
    checkpoints and events, and all stop together.

    Returns:
        A ``FitResult``. The best checkpoint (lowest validation loss, or the last one when
        there is no validation data) is pointed at by ``checkpoints/BEST``.

    Raises:
        DivergenceError: The training loss became NaN or infinite; the last good
            checkpoint stays as it was.
        CheckpointError: ``resume`` without a checkpoint, a foreign or damaged checkpoint,
            a fresh run into a directory that already holds one, or another process
            writing to ``run_dir`` (see :func:`ppgen.checkpoint.claim_run_dir`).
        ConfigError: ``run_dir`` is a file, or a directory that is not a ppgen run and not
            empty (ppgen never writes into the user's own folders).
    """
    if epochs < 1 or eval_every < 1 or (patience is not None and patience < 1):
        raise ConfigError("epochs, eval_every and patience must be positive integers")
    run_dir = Path(run_dir)
    main = getattr(trainer, "is_main_process", True)
    agree = getattr(trainer, "any_process", bool)
    with contextlib.ExitStack() as cleanup:
        if main:  # process 0 writes: it holds the run directory until the run ends
            cleanup.enter_context(claim_run_dir(run_dir, resume=resume))
        metrics_path = run_dir / "metrics.jsonl"
        state = trainer.init(seed, x_train)
        book = {"epoch": -1, "best_loss": math.inf, "best_epoch": None, "bad_evals": 0}

        if resume:
            arrays, meta = load_checkpoint(run_dir, require=RUN_META)
            if meta["seed"] != seed:
                raise CheckpointError(
                    f"checkpoint in {run_dir} was made with seed {meta['seed']}, not {seed}"
                )
            book = _check_book(meta["driver"], meta, run_dir)
            state = trainer.load_state_arrays(state, arrays, meta["trainer"])
            history = _truncate_metrics(metrics_path, book["epoch"]) if main else []
        else:
            if main:
                metrics_path.write_text("")
            history = []

        first = book["epoch"] + 1
        events = None
        if tensorboard and main:
            from ppgen.tracking import TensorBoardWriter

            # Epochs are logged 1-based; on resume the events of re-run epochs are dropped.
            sets = ("valid", *(monitor or {}))
            events = cleanup.enter_context(
                TensorBoardWriter(run_dir / "tensorboard", purge_step=first + 1, eval_sets=sets)
            )
        bar = cleanup.enter_context(
            tqdm(
                range(first, epochs),
                initial=first,
                total=epochs,
                desc="epochs",
                disable=not (progress and main),
                unit="epoch",
                dynamic_ncols=True,
            )
        )
        stopped_early = False
        started = time.perf_counter()
        for epoch in bar:
            t0 = time.perf_counter()
            state, metrics = trainer.train_epoch(state, x_train, epoch)
            loss = float(metrics["loss"])
            if not math.isfinite(loss):
                kept = (
                    f"the last good checkpoint (epoch {book['epoch'] + 1}) in {run_dir} is kept"
                    if book["epoch"] >= 0
                    else "no checkpoint was written"
                )
                raise DivergenceError(
                    f"training diverged: the loss is {loss} in epoch {epoch + 1}; {kept}. "
                    "Lower the learning rate (--lr) and train a new run."
                )
            record: dict[str, Any] = {"epoch": epoch, **{k: float(v) for k, v in metrics.items()}}
            record["train_seconds"] = time.perf_counter() - t0
            pointers = ["LATEST"]
            last = epoch == epochs - 1
            if x_valid is not None and ((epoch + 1) % eval_every == 0 or last):
                valid = trainer.evaluate(state, x_valid)
                # A trainer reports its validation "loss" (e.g. a classification error) or a bound.
                record["valid_loss"] = float(valid["loss"]) if "loss" in valid else -valid["elbo"]
                record.update({f"valid_{k}": float(v) for k, v in valid.items() if k != "loss"})
                for name, data in (monitor or {}).items():
                    seen = trainer.evaluate(state, data)
                    record.update({f"{name}_{k}": float(v) for k, v in seen.items() if k != "loss"})
                if record["valid_loss"] < book["best_loss"]:
                    book.update(best_loss=record["valid_loss"], best_epoch=epoch, bad_evals=0)
                    pointers.append("BEST")
                else:
                    book["bad_evals"] += 1
            elif x_valid is None:
                book["best_epoch"] = epoch
                pointers.append("BEST")
            book["epoch"] = epoch
            stopped_early = patience is not None and book["bad_evals"] >= patience
            if main:
                _append_jsonl(metrics_path, record)
                if events is not None:
                    events.scalars(record, step=epoch + 1)
                arrays, trainer_meta = trainer.state_arrays(state)
                save_checkpoint(
                    run_dir,
                    arrays,
                    {"seed": seed, "epoch": epoch, "trainer": trainer_meta, "driver": dict(book)},
                    tag=f"epoch-{epoch + 1:06d}",
                    pointers=tuple(pointers),
                )
            history.append(record)
            bar.set_postfix({k: f"{record[k]:.2f}" for k in ("loss", "valid_loss") if k in record})
            if on_epoch is not None:
                on_epoch(record)
            out_of_time = time_limit is not None and time.perf_counter() - started > time_limit
            if stopped_early or agree(out_of_time):
                break
    return FitResult(state, history, book["best_epoch"], stopped_early)
