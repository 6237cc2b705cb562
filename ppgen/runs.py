"""Runs: train a :class:`~ppgen.config.RunConfig` into a run directory and load it back.

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoints/``, pictures and,
when asked, ``tensorboard/``. What every family shares lives here: training with the
backend-free driver (epochs, checkpoints, exact resume, early stopping), rebuilding a
finished run as a typed :class:`Run`, and handing evaluation, sampling and pictures to the
model's recipe. Backends are imported lazily (by the recipes, through
:func:`ppgen.recipes.backend`), so ``ppgen --help`` does not pay for torch and jax.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ppgen.checkpoint import RUN_META, claim_run_dir, load_checkpoint, write_atomic
from ppgen.config import RunConfig, load_config, make_config
from ppgen.driver import FitResult, fit
from ppgen.errors import CheckpointError, ConfigError
from ppgen.recipes import Backend, FitData, Options, Recipe, backend
from ppgen.recipes.base import refuse_stand_in

__all__ = [
    "Run",
    "RunConfig",
    "evaluate",
    "fid",
    "load_config",
    "load_trained",
    "make_config",
    "sample",
    "save_pictures",
    "train",
]


@dataclass
class Run:
    """A trained run, rebuilt from its directory.

    Attributes:
        config: Its :class:`~ppgen.config.RunConfig`.
        data: What it was fitted and is tested on (the recipe's :class:`FitData`); for a
            run loaded with ``load_trained(..., data=False)``, the data's shapes only
            (``data.stand_in``).
        model: The backend's model, holding the checkpoint's weights (``model.bind``).
        objective: The training objective.
        trainer: The backend's trainer.
        state: The trainer's state at the checkpoint.
        epoch: The checkpoint's epoch (0-based).
        directory: The run directory.
    """

    config: RunConfig
    data: FitData
    model: Any
    objective: Any
    trainer: Any
    state: Any
    epoch: int
    directory: Path

    @property
    def recipe(self) -> Recipe:
        """The model's recipe."""
        return self.config.recipe

    @property
    def backend(self) -> Backend:
        """The backend's modules (``models``, ``inference``)."""
        return backend(self.config.backend)


def _build(config: RunConfig, data: FitData | None = None) -> tuple[FitData, Any]:
    """The run's data (``data``, else the recipe's ``prepare``) and its built model."""
    if data is None:
        data = config.recipe.prepare(config)
    if not data.stand_in and config.batch_size > data.num_data:
        raise ConfigError(
            f"--batch-size {config.batch_size} is more than the {data.num_data} training "
            f"examples of this {config.model} run on {config.dataset} (per epoch); choose "
            f"at most {data.num_data}"
        )
    return data, config.recipe.build(config, data, backend(config.backend))


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    time_limit: float | None = None,
    monitor_test: bool = False,
) -> FitResult:
    """Train the run a config describes into ``run_dir`` (see :func:`ppgen.driver.fit`).

    Args:
        config: The run.
        run_dir: Its directory (created; ``config.json`` is written there).
        resume: Continue the run in ``run_dir`` from its last checkpoint.
        progress: Show a progress bar.
        on_epoch: Called with every epoch's record.
        time_limit: Stop after the epoch during which this many seconds have passed.
        monitor_test: Also evaluate the test set at every evaluation (recorded as
            ``test_*``; model selection still uses the validation set only).

    Raises:
        CheckpointError: A fresh run into a directory that already holds one, ``resume``
            without a checkpoint, or another process writing to ``run_dir``.
        ConfigError: ``run_dir`` is a file, or a directory that is neither empty nor a ppgen
            run (:func:`ppgen.checkpoint.claim_run_dir`), or a bad setting.
        OSError: ``run_dir`` cannot be written (permissions, a full disk); the run stays as
            its last checkpoint left it.
    """
    run_dir = Path(run_dir)
    data, built = _build(config)  # a bad setting or missing data fails before any write
    config = config.recipe.settle(config, data)  # what it derives from the data, stored
    main = built.trainer.is_main_process
    with claim_run_dir(run_dir, resume=resume) if main else contextlib.nullcontext():
        if main:
            if resume:  # a damaged checkpoint is refused before config.json changes
                load_checkpoint(run_dir, require=RUN_META)
            write_atomic(run_dir / "config.json", config.to_json())  # on resume: a raised total
        hooks = [h for h in (on_epoch,) if h is not None]
        if built.on_epoch is not None and main:  # the recipe's pictures over training
            hooks.insert(0, functools.partial(_recipe_epoch, built.on_epoch, run_dir))
        return fit(
            built.trainer,
            data.train,
            data.valid,
            run_dir=run_dir,
            epochs=config.epochs,
            seed=config.seed,
            eval_every=config.eval_every,
            patience=config.patience,
            resume=resume,
            progress=progress,
            on_epoch=(lambda record: [h(record) for h in hooks]) if hooks else None,
            time_limit=time_limit,
            monitor={"test": data.test} if monitor_test else None,
            tensorboard=config.tensorboard,
        )


def _recipe_epoch(hook: Callable, run_dir: Path, record: dict) -> None:
    hook(record, run_dir)


def load_trained(run_dir: str | os.PathLike, pointer: str = "BEST", *, data: bool = True) -> Run:
    """Rebuild a finished run: its config, data, trainer state (the checkpoint ``pointer``
    names: ``"BEST"`` or ``"LATEST"``) and the model holding the trained weights.

    Args:
        run_dir: The run directory.
        pointer: ``"BEST"`` or ``"LATEST"``.
        data: Read the run's data (``True``, what evaluating and pictures need). ``False``:
            build the model from ``config.json`` and the data's shapes alone
            (``Recipe.shapes``), to sample a run from its directory on a machine without
            the corpus; ``run.data`` is then a stand-in (``run.data.stand_in``, no test
            set), which :func:`sample` draws from as usual and :func:`evaluate` and
            :func:`save_pictures` refuse. A family (or an older run's config) that cannot
            be built without its data reads it as with ``True``.

    Raises:
        CheckpointError: Not a run directory, no such checkpoint, or one of another model.
        DataError: The data are needed and cannot be read (one line naming where to put
            them).
    """
    config = load_config(run_dir)
    arrays, meta = load_checkpoint(run_dir, pointer, require={"epoch": int, "trainer": dict})
    # Evaluating and sampling run in this one process, whatever the run trained on.
    alone = dataclasses.replace(config, devices=1)
    fit_data, built = _build(alone, None if data else config.recipe.shapes(alone))
    state = built.trainer.init(config.seed, fit_data.train)
    state = built.trainer.load_state_arrays(state, arrays, meta["trainer"])
    # The objective's own networks (a GAN's critic) trained with the model but are not its.
    owned = tuple(f"{prefix}$" for prefix in getattr(built.objective, "param_prefixes", ()))
    params = {k: v for k, v in built.trainer.params(state).items() if not k.startswith(owned)}
    model = built.model.bind(params)
    return Run(
        config, fit_data, model, built.objective, built.trainer, state, meta["epoch"], Path(run_dir)
    )


def evaluate(run: Run, **settings: Any) -> dict[str, Any]:
    """The test figures of a trained run, as its recipe computes them (``settings``: the
    ``ppgen eval`` flags ``k``, ``limit``, ``batch_size``, ``progress``).

    Raises:
        CheckpointError: A figure is NaN or infinite (the weights are finite, but the model
            they make gives no usable figure): never reported as a result.
        ConfigError: The run was loaded without its data (``load_trained(..., data=False)``).
    """
    refuse_stand_in(run, "evaluating")
    out = run.recipe.evaluate(run, **settings)
    bad = [
        k
        for k, v in out.items()
        if isinstance(v, float | int) and not isinstance(v, bool) and not math.isfinite(v)
    ]
    if bad:
        raise CheckpointError(
            f"the checkpoint of {run.directory} (epoch {run.epoch + 1}) gives "
            + ", ".join(f"{k} = {out[k]}" for k in bad)
            + ": its weights are unusable; train the run again, with a lower learning rate"
        )
    return out


def sample(run: Run, n: int, seed: int = 0, options: Options | None = None) -> np.ndarray:
    """``n`` samples from a trained run, numpy (``(n, D)`` images; token or code sequences
    for text and audio); the caller's random streams are left as they were. ``options``:
    the recipe's ``sample_options`` (``None``: none given, the recipe's defaults). A run
    loaded with ``load_trained(..., data=False)`` draws the same samples as with its data.

    Raises:
        ConfigError: ``n`` is not a positive integer, or more than the family draws at once
            (``Recipe.check_sample_count``).
        CheckpointError: The samples hold NaN or infinite values (unusable weights).
    """
    run.recipe.check_sample_count(n, options)
    if options is None:
        x = run.recipe.sample(run, n, seed)
    else:
        x = run.recipe.sample(run, n, seed, options=options)
    if not np.isfinite(x).all():
        raise CheckpointError(
            f"the checkpoint of {run.directory} (epoch {run.epoch + 1}) draws NaN or "
            "infinite samples: its weights are unusable; train the run again, with a lower "
            "learning rate"
        )
    return x


def fid(run: Run, n: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """FID, KID, classes covered and the inception-score analogue of ``n`` samples of a
    trained MNIST run of any family against MNIST's test images, with ppgen's dataset
    classifier (``ppgen.classifier``, Heusel et al. 2017; Binkowski et al. 2018). Samples
    are drawn in draws of the family's ``max_samples`` (seeds ``seed``, ``seed + 1``, ...).

    Raises:
        ConfigError: A run not on MNIST (the classifier is MNIST's), or ``n`` not above the
            classifier's feature count (FID's covariances need more).
        CheckpointError: Non-finite samples.
    """
    from ppgen.classifier import check_fid_count, image_sample_metrics, load_classifier

    if run.config.dataset != "mnist":
        raise ConfigError(
            f"ppgen fid scores MNIST samples with ppgen's MNIST classifier; this run is on "
            f"{run.config.dataset!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int):
        raise ConfigError(f"the number of samples must be a positive integer, got {n!r}")
    classifier = load_classifier()
    check_fid_count(n, classifier, "-n")
    step = run.recipe.max_samples
    draws = [sample(run, min(step, n - i), seed + j) for j, i in enumerate(range(0, n, step))]
    x = np.concatenate(draws)
    if x.ndim != 2 or x.shape[1] != 784:
        raise ConfigError(f"a {run.recipe.name} run draws {x.shape[1:]} samples, not images")
    from ppgen.data import load_dataset

    test = load_dataset("mnist", "test").x  # grey [0, 1], whatever form the family trains on
    t0 = time.perf_counter()
    out = image_sample_metrics(np.clip(x, 0.0, 1.0), test, classifier)
    return {**out, "epoch": run.epoch + 1, "seconds": time.perf_counter() - t0}


def save_pictures(run: Run, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the recipe's pictures of a trained run into ``out_dir`` (default: the run's
    directory, whose ``metrics.jsonl`` the training curves read); with the config's
    ``tensorboard`` they are also logged as images at the run's last epoch.

    Raises:
        ConfigError: The run was loaded without its data (``load_trained(..., data=False)``):
            pictures may show test examples.
    """
    refuse_stand_in(run, "the pictures of")
    out_dir = Path(out_dir or run.directory)
    paths = run.recipe.pictures(run, out_dir)
    if run.config.tensorboard:
        from ppgen.tracking import TensorBoardWriter

        with TensorBoardWriter(run.directory / "tensorboard") as writer:
            for path in paths:
                writer.image(path.stem, path, step=run.epoch + 1)
    return paths
