"""Runs: a JSON config, the model and trainer it names, and what the CLI does with a run.

A run directory holds ``config.json`` (a ``RunConfig``), ``metrics.jsonl``, ``checkpoints/``
and pictures. This module turns a config into a backend's model and trainer, trains it with
the shared driver, and evaluates or samples a finished run. Backends are imported lazily,
so ``ppgen --help`` does not pay for importing torch and jax.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ppgen import data as ppdata
from ppgen.checkpoint import has_checkpoint, load_checkpoint, write_atomic
from ppgen.driver import FitResult, fit
from ppgen.errors import CheckpointError, ConfigError
from ppgen.metrics import active_units, summarize_nll

__all__ = [
    "RunConfig",
    "BACKENDS",
    "MODELS",
    "MODEL_DEFAULTS",
    "SEMI_SUPERVISED",
    "OBJECTIVES",
    "load_config",
    "load_splits",
    "build",
    "train",
    "load_trained",
    "evaluate",
    "evaluate_classifier",
    "fit_data",
    "m1_features",
    "sample",
    "reconstruct",
    "save_pictures",
]

BACKENDS = ("pyro", "numpyro")
MODELS = ("vae", "hvae", "m1", "m2", "m1m2")
SEMI_SUPERVISED = ("m1", "m2", "m1m2")  # evaluated by test classification error
M1_UNITS = ("active", "all")  # m1m2: which of M1's latent units M2 models
OBJECTIVES = ("elbo", "iwae")
CONFIG_FORMAT = "ppgen-run-v1"
SPLITS = ("train", "valid", "test")
# Per-model defaults of the command line: the papers' networks (Burda et al. 2015 for the
# VAEs; Kingma et al. 2014: M1 600-600 softplus, M2 one layer of 500 softplus).
MODEL_DEFAULTS = {
    "vae": {"hidden": (200, 200), "activation": "tanh", "lr": 1e-3},
    "hvae": {"hidden": (200, 200), "activation": "tanh", "lr": 1e-3},
    "m1": {"hidden": (600, 600), "activation": "softplus", "lr": 1e-3},
    "m2": {"hidden": (500,), "activation": "softplus", "lr": 3e-4},
    "m1m2": {"hidden": (500,), "activation": "softplus", "lr": 3e-4},
}


@dataclass
class RunConfig:
    """Everything that defines a training run (stored as ``config.json``)."""

    model: str = "vae"
    backend: str = "numpyro"
    dataset: str = "mnist"
    binarize: str = "dynamic"
    objective: str = "elbo"
    k: int = 1
    analytic_kl: bool = False
    latent: int = 50
    hidden: tuple[int, ...] = (200, 200)
    activation: str = "tanh"
    epochs: int = 10
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "constant"
    seed: int = 0
    eval_every: int = 1
    patience: int | None = None
    train_split: str = "train"
    kl_warmup: int = 0
    labels: int = 100  # m1/m2/m1m2: labelled training examples, class-balanced, drawn by seed
    alpha: float | None = None  # m2/m1m2: classification weight per labelled example
    labelled_batch_size: int | None = None  # m2/m1m2: default batch_size
    m1_run: str | None = None  # m1m2: the run directory of the M1 VAE whose features M2 models
    # m1m2: train on z1 ~ q(z1 | x), drawn afresh every step (the paper's stacked model);
    # False: on M1's posterior means
    m1_sample: bool = True
    # m1m2: "all": every M1 unit (the paper); "active": only those whose posterior mean varies
    # over the training images (Burda et al. 2015; the others carry only the prior's noise)
    m1_units: str = "all"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        for name, value, choices in [
            ("model", self.model, MODELS),
            ("backend", self.backend, BACKENDS),
            ("objective", self.objective, OBJECTIVES),
            ("binarize", self.binarize, ("dynamic", "static", "none")),
            ("train_split", self.train_split, ("train", "train_full")),
            ("m1_units", self.m1_units, M1_UNITS),
        ]:
            if value not in choices:
                raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if self.binarize == "none" and self.model in ("vae", "hvae", "m1"):
            raise ConfigError(
                f"{self.model} scores pixels with a Bernoulli likelihood, which needs binary "
                "pixels: use --binarize dynamic (fresh draws every epoch) or static "
                "(grey values are for m2)"
            )
        if self.kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be >= 0 epochs, got {self.kl_warmup}")
        if self.kl_warmup and self.objective != "elbo":
            raise ConfigError("kl_warmup anneals the ELBO's KL term; it needs --objective elbo")
        for name in ("k", "latent", "epochs", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError(f"hidden sizes must be positive integers, got {self.hidden}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.model in SEMI_SUPERVISED and self.labels < 1:
            raise ConfigError(f"labels must be a positive integer, got {self.labels}")
        if self.model == "m1m2" and not self.m1_run:
            raise ConfigError("m1m2 models the features of a trained M1 run: pass --m1 RUN_DIR")

    def to_json(self) -> str:
        return json.dumps({"format": CONFIG_FORMAT, **dataclasses.asdict(self)}, indent=1)


def load_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read ``<run_dir>/config.json``."""
    path = Path(run_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"{run_dir} is not a ppgen run directory (no config.json)") from e
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is corrupt: {e}") from e
    if raw.pop("format", None) != CONFIG_FORMAT:
        raise CheckpointError(f"{path} is not a ppgen run config")
    if raw.get("model") == "m1m2":
        raw.setdefault("m1_sample", False)  # written before M1+M2 could sample z1: means
        raw.setdefault("m1_units", "all")  # written before M1+M2 could drop inactive units
    known = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in raw.items() if k in known})


def load_splits(config: RunConfig) -> SimpleNamespace:
    """Train, validation and test arrays for a config.

    Training data keeps grey values for dynamic binarization (the trainer draws fresh
    binary pixels every epoch); validation and test sets are binarized once with a fixed
    seed (0), so every run is evaluated on the same binary images.
    """
    train_mode = {"dynamic": "none", "static": "static", "none": "none"}[config.binarize]
    eval_mode = "none" if config.binarize == "none" else "static"
    train = ppdata.load_dataset(
        config.dataset, config.train_split, binarize=train_mode, seed=config.seed
    )
    valid = None
    if config.train_split == "train":
        valid = ppdata.load_dataset(config.dataset, "valid", binarize=eval_mode, seed=0)
    test = ppdata.load_dataset(config.dataset, "test", binarize=eval_mode, seed=0)
    return SimpleNamespace(train=train, valid=valid, test=test)


def m1_features(m1: SimpleNamespace) -> SimpleNamespace:
    """Posterior means of a trained M1 (VAE) run on the grey-valued train, validation and
    test images: ``.train``, ``.valid``, ``.test``, each with ``x`` (features), ``scale``
    (the posterior standard deviations) and ``y``."""
    from ppgen.semisupervised import encode_posteriors

    out = {}
    for split in SPLITS:
        d = ppdata.load_dataset(m1.config.dataset, split, binarize="none")
        loc, scale = encode_posteriors(m1, d.x)
        out[split] = SimpleNamespace(x=loc, scale=scale, y=d.y)
    return SimpleNamespace(**out)


def _m1_features(m1_dir: str | os.PathLike, units: str = "all") -> SimpleNamespace:
    """:func:`m1_features` of the M1 run in ``m1_dir``, which it also carries (``.m1``), with
    ``.units`` the indices of the latent units kept: every unit, or (``units="active"``)
    those active on the training images (:func:`ppgen.metrics.active_units`)."""
    m1 = load_trained(m1_dir)
    if m1.config.model not in ("m1", "vae"):
        raise ConfigError(f"{m1_dir} holds a {m1.config.model} run; M1+M2 needs an m1 (VAE) run")
    f = m1_features(m1)
    keep = np.arange(f.train.x.shape[1])
    if units == "active":
        keep = np.flatnonzero(active_units(f.train.x))
        if len(keep) == 0:
            raise ConfigError(
                f"the M1 run in {m1_dir} has no active latent unit (its posterior is the prior "
                "for every image); train it longer, or pass --m1-units all"
            )
        for split in SPLITS:
            d = getattr(f, split)
            setattr(f, split, SimpleNamespace(x=d.x[:, keep], scale=d.scale[:, keep], y=d.y))
    return SimpleNamespace(**vars(f), m1=m1, units=keep)


def fit_data(config: RunConfig, splits: SimpleNamespace) -> SimpleNamespace:
    """What the trainer of a config fits and is validated on.

    ``vae``, ``hvae`` and ``m1`` (the VAE of M1) take images; ``m2`` takes ``(x, y)`` with
    ``config.labels`` class-balanced labels drawn by ``config.seed`` and ``-1`` elsewhere;
    ``m1m2`` the same with the M1 run's features in place of images. ``test`` is ``(x, y)``.
    """
    test = (splits.test.x, splits.test.y)
    if config.model in ("vae", "hvae", "m1"):
        valid = None if splits.valid is None else splits.valid.x
        return SimpleNamespace(train=splits.train.x, valid=valid, test=test, x_dim=test[0].shape[1])
    source = splits if config.model == "m2" else _m1_features(config.m1_run, config.m1_units)
    if splits.valid is None:
        raise ConfigError("semi-supervised runs select their model on the validation split")
    y = ppdata.partial_labels(source.train.y, config.labels, seed=config.seed)
    return SimpleNamespace(
        train=(source.train.x, y),
        valid=(source.valid.x, source.valid.y),
        test=(source.test.x, source.test.y),
        x_dim=source.train.x.shape[1],
        num_unlabelled=int(np.sum(y == ppdata.MISSING)),
        m1=getattr(source, "m1", None),
        m1_units=getattr(source, "units", None),  # m1m2: M1's latent units M2 models
        # m1m2: the trainer draws z1 ~ N(loc, scale^2) afresh every step
        input_scale=source.train.scale if config.model == "m1m2" and config.m1_sample else None,
    )


def _modules(backend: str) -> tuple[Any, Any]:
    if backend == "pyro":
        from ppgen.inference import pyro as inference
        from ppgen.models import pyro as models
    else:
        from ppgen.inference import numpyro as inference
        from ppgen.models import numpyro as models
    return models, inference


def _linear_warmup(step: int, warmup_steps: int) -> float:
    return min(1.0, (step + 1) / warmup_steps)


def _build_m2(
    config: RunConfig, x_dim: int, num_unlabelled: int, input_scale: np.ndarray | None = None
) -> SimpleNamespace:
    models, inference = _modules(config.backend)
    model = models.SSVAE(
        x_dim,
        num_classes=10,
        latent=config.latent,
        hidden=config.hidden,
        activation=config.activation,
        likelihood="bernoulli" if config.model == "m2" else "gaussian",
        seed=config.seed,
    )
    objective = inference.SemiSupervisedELBO(alpha=config.alpha, num_particles=config.k)
    transform = None
    if config.model == "m2" and config.binarize == "dynamic":
        transform = inference.DynamicBinarization()
    elif input_scale is not None:
        transform = inference.InputNoise(input_scale)
    trainer = inference.Trainer(
        model.model,
        model.guide,
        objective,
        lr=config.lr,
        lr_schedule=config.lr_schedule,
        total_steps=config.epochs * max(1, num_unlabelled // config.batch_size),
        batch_size=config.batch_size,
        schedule=ppdata.LabelledBatches(10, config.labelled_batch_size),
        transform=transform,
        evaluator=inference.ClassifierEvaluator(),
    )
    return SimpleNamespace(
        model=model,
        objective=objective,
        trainer=trainer,
        inference=inference,
        backend=config.backend,
        semi_supervised=config.model in ("m2", "m1m2"),
    )


def build(
    config: RunConfig, x_dim: int, num_data: int, input_scale: np.ndarray | None = None
) -> SimpleNamespace:
    """The model, objective and trainer a config names, for data of shape (num_data, x_dim).

    For ``m2``/``m1m2``, ``num_data`` is the number of unlabelled training examples; for
    ``m1m2``, ``input_scale`` holds the standard deviations of M1's posteriors on the
    training images (see :func:`fit_data`).
    """
    if config.model in ("m2", "m1m2"):
        return _build_m2(config, x_dim, num_data, input_scale)
    models, inference = _modules(config.backend)
    if config.model in ("vae", "m1"):
        model = models.VAE(
            x_dim,
            latent=config.latent,
            hidden=config.hidden,
            activation=config.activation,
            likelihood="bernoulli",
            seed=config.seed,
        )
    else:
        half = tuple(max(1, h // 2) for h in config.hidden)
        model = models.HierarchicalVAE(
            x_dim,
            latents=(2 * config.latent, config.latent),
            hidden=(config.hidden, half),
            activation=config.activation,
            seed=config.seed,
        )
    if config.objective == "elbo":
        objective = inference.ELBO(num_particles=config.k, analytic_kl=config.analytic_kl)
    else:
        objective = inference.IWAE(num_particles=config.k)
    steps_per_epoch = max(1, num_data // config.batch_size)
    beta_schedule = None
    if config.kl_warmup:
        warmup_steps = config.kl_warmup * steps_per_epoch
        # KL annealing (Bowman et al. 2016): beta rises linearly from 0 to 1.
        beta_schedule = functools.partial(_linear_warmup, warmup_steps=warmup_steps)
    trainer = inference.Trainer(
        model.model,
        model.guide,
        objective,
        lr=config.lr,
        lr_schedule=config.lr_schedule,
        total_steps=config.epochs * steps_per_epoch,
        batch_size=config.batch_size,
        num_data=num_data,
        transform=inference.DynamicBinarization() if config.binarize == "dynamic" else None,
        beta_schedule=beta_schedule,
    )
    return SimpleNamespace(
        model=model,
        objective=objective,
        trainer=trainer,
        inference=inference,
        backend=config.backend,
        semi_supervised=config.model in ("m2", "m1m2"),
    )


def _build_for(config: RunConfig, data: SimpleNamespace, splits: SimpleNamespace):
    """:func:`build` for the :func:`fit_data` of a config."""
    num_data = getattr(data, "num_unlabelled", len(splits.train))
    return build(config, data.x_dim, num_data, getattr(data, "input_scale", None))


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[dict], None] | None = None,
    time_limit: float | None = None,
    monitor_test: bool = False,
) -> tuple[FitResult, SimpleNamespace]:
    """Train the run a config describes into ``run_dir`` (see ``ppgen.driver.fit``).

    ``monitor_test`` also evaluates the test set at every evaluation (recorded as
    ``test_*``, e.g. ``test_error``; model selection still uses the validation set only).
    """
    run_dir = Path(run_dir)
    splits = load_splits(config)
    data = fit_data(config, splits)
    built = _build_for(config, data, splits)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and has_checkpoint(run_dir):
        raise CheckpointError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another "
            "output directory"
        )
    write_atomic(run_dir / "config.json", config.to_json())  # on resume: a raised epoch total
    result = fit(
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
        on_epoch=on_epoch,
        time_limit=time_limit,
        monitor=({"test": data.test if built.semi_supervised else data.test[0]})
        if monitor_test
        else None,
    )
    return result, built


def load_trained(run_dir: str | os.PathLike, pointer: str = "BEST") -> SimpleNamespace:
    """Rebuild a finished run: config, data splits, trainer state and the trained model."""
    config = load_config(run_dir)
    splits = load_splits(config)
    data = fit_data(config, splits)
    built = _build_for(config, data, splits)
    state = built.trainer.init(config.seed, data.train)
    arrays, meta = load_checkpoint(run_dir, pointer)
    state = built.trainer.load_state_arrays(state, arrays, meta["trainer"])
    built.model = built.model.bind(built.trainer.params(state))
    return SimpleNamespace(
        config=config, splits=splits, data=data, state=state, epoch=meta["epoch"], **vars(built)
    )


def evaluate_classifier(run: SimpleNamespace) -> dict:
    """Test classification error of a semi-supervised run (m1, m2, m1m2), with its confusion
    matrix; M1 first fits its classifier on the labelled features (chosen on validation)."""
    from ppgen.semisupervised import classification_report, fit_m1_classifier

    t0 = time.perf_counter()
    config, extra = run.config, {}
    x_test, y_test = run.data.test
    if config.model == "m1":
        f = m1_features(run)
        y = ppdata.partial_labels(f.train.y, config.labels, seed=config.seed)
        clf, extra = fit_m1_classifier(f.train.x, y, f.valid.x, f.valid.y, seed=config.seed)
        extra.pop("candidates")
        y_pred = clf.predict(f.test.x)
    else:
        y_pred = run.trainer.evaluator.predict(run.trainer, run.state, x_test)
        extra["valid_error"] = float(run.trainer.evaluate(run.state, run.data.valid)["error"])
    report = classification_report(y_test, y_pred, 10)
    return {
        "test_error": report["error"],
        **extra,
        "labels": config.labels,
        "n": len(y_test),
        "epoch": run.epoch + 1,
        "confusion": report["confusion"],
        "seconds": time.perf_counter() - t0,
    }


def evaluate(
    run: SimpleNamespace,
    *,
    k: int = 5000,
    limit: int | None = None,
    batch_size: int = 100,
    chunk_size: int = 500,
    progress: bool = True,
) -> dict:
    """Test ELBO and importance-sampled test NLL (``k`` samples) of a trained run."""
    x = run.splits.test.x[:limit]
    t0 = time.perf_counter()
    elbo = float(run.trainer.evaluate(run.state, x)["elbo"])
    kwargs = dict(
        num_samples=k, batch_size=batch_size, chunk_size=min(chunk_size, k), progress=progress
    )
    if run.backend == "numpyro":
        import jax

        log_px = run.inference.evaluate_log_likelihood(
            jax.random.PRNGKey(run.config.seed), run.model.model, run.model.guide, x, **kwargs
        )
    else:
        with _torch_seeded(run.config.seed):
            log_px = run.inference.evaluate_log_likelihood(
                run.model.model, run.model.guide, x, **kwargs
            )
    summary = summarize_nll(np.asarray(log_px), x.shape[1])
    return {
        "test_nll": summary["nll"],
        "test_nll_stderr": summary["nll_stderr"],
        "test_bits_per_dim": summary["bits_per_dim"],
        "test_elbo": elbo,
        "k": k,
        "n": summary["n"],
        "epoch": run.epoch + 1,
        "seconds": time.perf_counter() - t0,
    }


@contextlib.contextmanager
def _torch_seeded(seed: int):
    """Pyro draws from torch's global RNG: seed it for the block, then restore the caller's."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def sample(run: SimpleNamespace, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images (mean of p(x|z), z from the prior) from a trained run, numpy (n, D).

    M2 and M1+M2 runs draw their classes in turn, ``ceil(n / 10)`` per class."""
    if run.config.model in ("m2", "m1m2"):
        return class_samples(run, per_class=-(-n // 10), seed=seed)[:n]
    if run.backend == "numpyro":
        import jax

        return np.asarray(run.model.sample(jax.random.PRNGKey(seed), n))
    import torch

    with _torch_seeded(seed), torch.no_grad():
        return run.model.sample(n).numpy()


def reconstruct(run: SimpleNamespace, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Reconstructions (mean of p(x|z), z ~ q(z|x)) of ``x`` by a trained run."""
    if run.backend == "numpyro":
        import jax

        return np.asarray(run.model.reconstruct(jax.random.PRNGKey(seed), x))
    import torch

    with _torch_seeded(seed), torch.no_grad():
        return run.model.reconstruct(torch.as_tensor(x)).numpy()


def save_pictures(run: SimpleNamespace, out_dir: str | os.PathLike, n: int = 64) -> list[Path]:
    """Write ``samples.png``, ``reconstructions.png`` (of the first ``n`` test images) and
    ``curves.png`` (from ``out_dir/metrics.jsonl``) for a trained run; returns the paths."""
    from ppgen import plots

    out_dir = Path(out_dir)
    if run.config.model in SEMI_SUPERVISED:
        return _save_classifier_pictures(run, out_dir)
    shape = run.splits.test.image_shape
    x = run.splits.test.x[:n]
    return [
        plots.save_image_grid(sample(run, n), out_dir / "samples.png", shape),
        plots.save_reconstructions(x, reconstruct(run, x), out_dir / "reconstructions.png", shape),
        plots.save_training_curves(out_dir / "metrics.jsonl", out_dir / "curves.png"),
    ]


def class_samples(run: SimpleNamespace, per_class: int = 10, seed: int = 0) -> np.ndarray:
    """Images of an m2/m1m2 run drawn class by class: (10 * per_class, D), one class per row.

    M1+M2 samples M1's latent features from M2 and decodes them with M1's decoder.
    """
    y = np.repeat(np.arange(10), per_class)
    if run.backend == "numpyro":
        import jax

        out = np.asarray(run.model.sample(jax.random.PRNGKey(seed), len(y), y=y))
    else:
        import torch

        with _torch_seeded(seed), torch.no_grad():
            out = run.model.sample(len(y), y=torch.as_tensor(y)).numpy()
    if run.config.model == "m1m2":
        m1 = run.data.m1
        full = np.zeros((len(out), m1.config.latent), out.dtype)  # dropped units: prior mean
        full[:, run.data.m1_units] = out
        out = full
        if m1.backend == "numpyro":
            out = np.asarray(m1.model.decode(out))
        else:
            import torch

            with torch.no_grad():
                out = m1.model.decode(torch.as_tensor(out)).numpy()
    return out


def analogies(run: SimpleNamespace, x: np.ndarray) -> np.ndarray:
    """An m2 run's analogies: each row of ``x`` in its own style as every class,
    ``(len(x), 10, D)``."""
    if run.backend == "numpyro":
        return np.asarray(run.model.analogies(x, np.arange(10)))
    import torch

    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.get_default_dtype())
        return run.model.analogies(xt, torch.arange(10)).numpy()


def _save_classifier_pictures(run: SimpleNamespace, out_dir: Path) -> list[Path]:
    from ppgen import plots

    shape = run.splits.test.image_shape
    result = evaluate_classifier(run)
    paths = [
        plots.save_confusion_matrix(
            np.asarray(result["confusion"]),
            out_dir / "confusion.png",
            f"{run.config.model.upper()}, {run.config.labels} labels: "
            f"test error {100 * result['test_error']:.2f}%",
        ),
        plots.save_training_curves(
            out_dir / "metrics.jsonl",
            out_dir / "curves.png",
            keys=("loss",),
            right_keys=("valid_error",) if run.config.model != "m1" else (),
            right_label="validation error",
        ),
    ]
    if run.config.model == "m1":
        paths.append(plots.save_image_grid(sample(run, 64), out_dir / "samples.png", shape))
    else:
        images = class_samples(run)
        paths.append(plots.save_image_grid(images, out_dir / "class_samples.png", shape, ncol=10))
    if run.config.model == "m2":
        # Each row: a test image, then its style written as every digit (Kingma et al. fig. 1).
        x = run.data.test[0][:8]
        grid = np.concatenate([x[:, None], analogies(run, x)], axis=1).reshape(-1, x.shape[1])
        paths.append(plots.save_image_grid(grid, out_dir / "analogies.png", shape, ncol=11))
    return paths
