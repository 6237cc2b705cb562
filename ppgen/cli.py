"""The ``ppgen`` command line: train, evaluate and sample generative models.

    ppgen train vae --backend numpyro --dataset mnist --epochs 10 --out runs/vae
    ppgen train m2 --help                                     (what M2 takes)
    ppgen eval runs/vae --k 5000 --json
    ppgen train m2 --labels 100 --epochs 50 --out runs/m2     (semi-supervised, M2)
    ppgen eval runs/m2 --json                                 (test classification error)
    ppgen sample runs/vae -n 64

Every model is a registered recipe (``ppgen.recipes``); ``ppgen train MODEL`` takes the
settings every run shares and the model's own options. A mistake of the user's or of the
environment (an unknown option, a bad value, missing or unreadable data, a damaged run
directory, a full disk) is printed as one line on stderr with exit status 2, and Ctrl-C
exits with 130; neither prints a traceback. Any other exception is a bug in ppgen and keeps
its traceback, so that it gets reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ppgen import __version__
from ppgen.checkpoint import RUN_META, has_checkpoint, load_checkpoint
from ppgen.config import RUN_DEFAULTS
from ppgen.data import DATASETS
from ppgen.errors import ConfigError, ConvergenceWarning, PPGenError
from ppgen.inference.optim import LR_SCHEDULES
from ppgen.recipes import RECIPES, Recipe
from ppgen.recipes.base import (
    BACKENDS,
    help_with_default,
    non_negative_float,
    positive,
    seed_int,
)

__all__ = ["build_parser", "main", "os_error_line"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and name the help to read."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


#: What the help says of each dataset a recipe may offer; the others are 2-D toy sets.
DATASET_NOTES = {
    "mnist": "mnist (28x28, read from $PPGEN_DATA)",
    "digits": "digits (scikit-learn's 8x8, no files needed)",
    "shakespeare": "shakespeare (Tiny Shakespeare, read from $PPGEN_DATA)",
    "speech": "speech (16 kHz WAV, read from $PPGEN_DATA)",
}


def _count(n: int, noun: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _dataset_help(datasets: Sequence[str]) -> str:
    """The ``--dataset`` help of one recipe: only the datasets it takes."""
    named = [DATASET_NOTES[d] for d in datasets if d in DATASET_NOTES]
    if any(d not in DATASET_NOTES for d in datasets):
        named.append("2-D toy densities (drawn, no files)")
    return "training data: " + ", ".join(named)


def _shared_arguments(p: argparse.ArgumentParser, recipe: Recipe) -> None:
    """The settings of every run, with the recipe's defaults; the flags of settings the
    recipe fixes (``Recipe.fixed_settings``) are not offered."""
    d = {**dict(RUN_DEFAULTS), **dict(recipe.defaults)}
    datasets = recipe.datasets or tuple(DATASETS)
    g = p.add_argument_group("run settings")

    def add(flag: str, text: str, **kw: Any) -> None:
        g.add_argument(flag, help=help_with_default(text, kw.get("default")), **kw)

    add("--backend", "pyro (PyTorch) or numpyro (JAX)", choices=BACKENDS, default=d["backend"])
    add("--dataset", _dataset_help(datasets), choices=datasets, default=d["dataset"])
    add(
        "--epochs",
        f"total epochs (default {d['epochs']}; with --resume, the new total)",
        type=positive(int),
        metavar="N",
    )
    add("--batch-size", "examples per training step", type=positive(int),
        default=d["batch_size"], metavar="N")  # fmt: skip
    add("--lr", "learning rate (the peak rate under a schedule)", type=positive(float),
        default=d["lr"])  # fmt: skip
    add("--lr-schedule", "constant, or decaying over the run", choices=LR_SCHEDULES,
        default=d["lr_schedule"])  # fmt: skip
    add("--weight-decay", "weight decay (AdamW's decoupled decay; default 0: none)",
        type=non_negative_float, default=d["weight_decay"], metavar="LAMBDA")  # fmt: skip
    add("--seed", "seed of the whole run: weights, labelled examples, every epoch's "
        "randomness", type=seed_int, default=d["seed"])  # fmt: skip
    add("--eval-every", "evaluate on the validation set every N epochs (and after the last)",
        type=positive(int), default=d["eval_every"], metavar="N")  # fmt: skip
    add("--patience", "stop after N evaluations without improvement (default: never)",
        type=positive(int), metavar="N")  # fmt: skip
    if "train_split" not in recipe.fixed_settings:
        add(
            "--full-train",
            "train on every training example, the validation split included (no "
            "validation: the last epoch counts as the best)",
            action="store_true",
        )
    add(
        "--devices",
        "data-parallel devices: processes under torchrun (Pyro) or a JAX mesh (NumPyro)",
        type=positive(int),
        default=d["devices"],
        metavar="N",
    )
    add(
        "--tensorboard",
        "also write TensorBoard events to OUT/tensorboard (pip install 'ppgen[tensorboard]')",
        action="store_true",
    )
    add("--out", "run directory: a new or empty directory, or the run to --resume",
        type=Path, required=True)  # fmt: skip
    add(
        "--resume",
        "continue the run in --out from its last checkpoint (only --epochs, the new total, "
        "may change; --tensorboard may be switched on)",
        action="store_true",
    )
    add("--quiet", "no progress bar", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    """The ``ppgen`` argument parser: one ``train`` sub-command per registered model.

    ``parser.leaves`` maps each command (``"eval"``, ``"sample"``) and each ``("train",
    MODEL)`` to its own parser, the one whose help an error points at.
    """
    parser = _Parser(
        prog="ppgen",
        description="Train, evaluate and sample deep generative models (Pyro or NumPyro). "
        "`ppgen train --help` lists the models.",
        epilog="Data: MNIST is read from $PPGEN_DATA (default ~/.cache/ppgen). A mistake in "
        "the input or the environment is one line on stderr with exit status 2; Ctrl-C "
        "exits with 130.",
    )
    parser.add_argument("--version", action="version", version=f"ppgen {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="{train,eval,sample,fid}"
    )

    p = sub.add_parser(
        "train",
        help="train a model into a run directory",
        description="Train a model; metrics, checkpoints and pictures go to --out. "
        "`ppgen train MODEL --help` lists what MODEL takes.",
    )
    models = p.add_subparsers(
        dest="model", required=True, parser_class=_Parser, metavar="MODEL", title="models"
    )
    parser.leaves = {}  # the parser of each command (and model): where its errors point
    for recipe in RECIPES.values():
        m = parser.leaves["train", recipe.name] = models.add_parser(
            recipe.name, help=recipe.help, description=recipe.description
        )
        _shared_arguments(m, recipe)
        recipe.options.add_arguments(m)

    p = parser.leaves["eval"] = sub.add_parser(
        "eval",
        help="test figures of a run (NLL and ELBO, or classification error)",
        description="Evaluate a trained run on its test set, as its model's recipe does. "
        f"{_eval_reports()}.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "--k",
        type=positive(int),
        default=5000,
        metavar="K",
        help=help_with_default("importance samples per test example for the NLL", 5000),
    )
    p.add_argument(
        "--limit",
        type=positive(int),
        metavar="N",
        help="evaluate on the first N test examples only (default: all)",
    )
    p.add_argument("--batch-size", type=positive(int), default=100, metavar="N",
                   help=help_with_default("test examples per batch of the NLL", 100))  # fmt: skip
    p.add_argument(
        "--checkpoint",
        choices=["best", "latest"],
        default="best",
        help=help_with_default("best: the best validation figure; latest: the last epoch", "best"),
    )
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")

    p = parser.leaves["fid"] = sub.add_parser(
        "fid",
        help="FID and KID of a MNIST run of any family, with ppgen's dataset classifier",
        description="Score samples of a trained MNIST run (any family: VAE, flow, "
        "autoregressive, GAN, ...) against MNIST's test images: FID and KID on the "
        "dataset classifier's features, classes covered, inception-score analogue. The "
        "classifier is read from $PPGEN_DATA/classifiers (trained there first if missing).",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("-n", type=positive(int), default=10_000,
                   help=help_with_default("number of samples", 10_000))  # fmt: skip
    p.add_argument(
        "--seed", type=seed_int, default=0, help=help_with_default("seed of the draws", 0)
    )
    p.add_argument("--json", action="store_true", help="end with one JSON line of the figures")

    p = parser.leaves["sample"] = sub.add_parser(
        "sample",
        help="write samples from a run (a PNG grid of images, or the family's own file)",
        description="Draw samples from a trained run (its best checkpoint) and write them: "
        "one PNG grid for images and 2-D points, text or WAV for those families; the path is "
        "printed.",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "-n",
        type=positive(int),
        help="number of samples (default: the model's, 64 images for image models)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help=help_with_default("seed of the draws", 0)
    )
    p.add_argument(
        "--out",
        type=Path,
        help="file to write, not an existing one; missing folders are created, as train's "
        "--out creates its run directory's (default: RUN/samples.png, or .txt/.wav for text "
        "and audio models)",
    )
    _sample_flags(p)
    return parser


def _eval_reports() -> str:
    """What ``ppgen eval`` reports for each model (``Recipe.eval_report``, models with the
    same report named together) and which of its flags each uses (``Recipe.eval_flags``)."""
    reports: dict[str, list[str]] = {}
    flags: dict[str, list[str]] = {}
    for recipe in RECIPES.values():
        if recipe.eval_report:
            reports.setdefault(recipe.eval_report, []).append(recipe.name)
        for flag in recipe.eval_flags:
            flags.setdefault("--" + flag.replace("_", "-"), []).append(recipe.name)
    said = "; ".join(f"{', '.join(names)}: {report}" for report, names in reports.items())
    used = "; ".join(f"{flag} applies to {', '.join(names)}" for flag, names in flags.items())
    return f"It reports, by model: {said}. {used}" if said else used


def _sample_flags(p: argparse.ArgumentParser) -> None:
    """The flags of every recipe's ``sample_options`` (``Recipe.sample_options``), each
    once, unset unless given (dest ``sample_<field>``); each applies to the runs of the
    models named in its help, and :func:`_sample` refuses it for the others."""
    owners: dict[str, list[str]] = {}
    first: dict[str, dict[str, Any]] = {}
    for recipe in RECIPES.values():
        for flag, kwargs in recipe.sample_options.flags().items():
            owners.setdefault(flag, []).append(recipe.name)
            first.setdefault(flag, kwargs)
    if not first:
        return
    g = p.add_argument_group("model options (each for the runs of the models named)")
    for flag, kwargs in first.items():
        kwargs = {
            **kwargs,
            "dest": "sample_" + kwargs["dest"],
            "default": argparse.SUPPRESS,
            "help": f"{kwargs['help']} [{', '.join(owners[flag])}]",
        }
        g.add_argument(flag, **kwargs)


# Run settings whose flag holds the config's value as it is.
_AS_GIVEN = (
    *("backend", "dataset", "batch_size", "lr", "lr_schedule", "weight_decay", "seed"),
    *("eval_every", "patience", "devices", "tensorboard"),
)
# Flags that are not settings of the run, or that a resumed run may change.
_NOT_COMPARED = {"command", "model", "out", "resume", "quiet", "epochs", "tensorboard"}


def _given(argv: Sequence[str], leaf: Any, dests: Sequence[str]) -> dict[str, Any]:
    """The flags the command line gives explicitly (not by default), by destination."""
    unset = object()  # not a string: argparse converts string defaults with the flag's type
    parser = build_parser()
    parser.leaves[leaf].set_defaults(**{d: unset for d in dests})
    args, _ = parser.parse_known_args(argv)
    return {k: v for k, v in vars(args).items() if v is not unset}


def _flag(recipe: Recipe, dest: str) -> str:
    for f in dataclasses.fields(recipe.options):
        if f.name == dest and f.metadata.get("flag"):
            return f.metadata["flag"]
    return "--" + dest.replace("_", "-")


def _check_resume(args: argparse.Namespace, argv: Sequence[str], config: Any) -> None:
    """Refuse a resumed run whose command line differs from its config.json in anything
    but --epochs (and an added --tensorboard), naming the first such flag."""
    recipe = RECIPES[args.model]
    given = _given(argv, ("train", args.model), list(vars(args)))
    option_names = {f.name for f in dataclasses.fields(recipe.options)}
    for dest in sorted(set(given) - _NOT_COMPARED):
        if dest == "full_train":
            value, stored = "train_full" if given[dest] else "train", config.train_split
        elif dest in option_names:
            value, stored = given[dest], getattr(config.options, dest)
        else:
            value, stored = given[dest], getattr(config, dest)
        if value != stored:
            shown = ",".join(map(str, stored)) if isinstance(stored, tuple) else stored
            raise ConfigError(
                f"{_flag(recipe, dest)} differs from the run in {args.out} (it has {shown}); a "
                "resumed run keeps its settings and only --epochs may change: drop "
                f"{_flag(recipe, dest)}, or train a new run into another --out"
            )


def _config(args: argparse.Namespace, argv: Sequence[str]):
    from ppgen import runs

    recipe = RECIPES[args.model]
    if args.resume:
        config = runs.load_config(args.out)
        if config.model != args.model:
            raise ConfigError(
                f"{args.out} holds a {config.model} run; resume it with `ppgen train "
                f"{config.model} --out {args.out} --resume`"
            )
        _check_resume(args, argv, config)
        config = dataclasses.replace(
            config,
            epochs=args.epochs or config.epochs,  # --epochs: the new total, lower or higher
            tensorboard=config.tensorboard or args.tensorboard,
        )
        _, meta = load_checkpoint(args.out, require=RUN_META)
        done = meta["epoch"] + 1
        if done >= config.epochs:
            raise ConfigError(
                f"the run in {args.out} has trained {_count(done, 'epoch')}, at least as many "
                f"as --epochs asks ({config.epochs}); pass --epochs N with N > {done} to train it "
                "further"
            )
        return config
    fixed = dict(recipe.fixed_settings)
    return runs.RunConfig(
        model=args.model,
        epochs=args.epochs or RUN_DEFAULTS["epochs"],
        train_split=fixed.get(
            "train_split", "train_full" if getattr(args, "full_train", False) else "train"
        ),
        options=recipe.options.from_args(args),
        **{name: getattr(args, name) for name in _AS_GIVEN},
    )


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs
    from ppgen.launch import is_main_process, prepare_devices

    config = _config(args, argv)
    status = prepare_devices(config.backend, config.devices, argv)
    if status is not None:
        return status
    result = runs.train(config, args.out, resume=args.resume, progress=not args.quiet)
    if not is_main_process():
        return 0
    paths = runs.save_pictures(runs.load_trained(args.out))
    last = result.history[-1] if result.history else {}
    error = f", validation error {100 * last['valid_error']:.2f}%" if "valid_error" in last else ""
    players = {k[5:]: v for k, v in last.items() if k.startswith("loss_")}
    if players:  # several players: each one's loss (their sum means nothing)
        losses = ", ".join(f"{name} {value:.2f}" for name, value in players.items())
        loss = f"last train losses {losses}"
    else:
        loss = f"last train loss {last.get('loss', float('nan')):.2f}"
    print(
        f"trained {config.model} ({config.backend}) for {_count(len(result.history), 'epoch')}; "
        f"{loss} {config.recipe.loss_unit(config)}{error}, best epoch "
        f"{(result.best_epoch or 0) + 1}{' (stopped early)' if result.stopped_early else ''}"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def _eval(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs

    recipe = runs.load_config(args.run).recipe
    given = _given(argv, "eval", list(vars(args)))
    ignored = [f for f in ("k", "limit", "batch_size") if f in given and f not in recipe.eval_flags]
    if ignored:  # said, not refused: scripts evaluate runs of every family alike
        flags = ", ".join("--" + f.replace("_", "-") for f in ignored)
        print(
            f"ppgen: note: {flags} not used: a {recipe.name} run is evaluated by its test "
            "classification error on the whole test set"
            if not recipe.eval_flags
            else f"ppgen: note: {flags} not used by a {recipe.name} run",
            file=sys.stderr,
        )
    run = runs.load_trained(args.run, "BEST" if args.checkpoint == "best" else "LATEST")
    out = runs.evaluate(
        run, k=args.k, limit=args.limit, batch_size=args.batch_size, progress=not args.json
    )
    print(run.recipe.summary(out))
    if args.json:
        print(json.dumps(out))
    return 0


def _fid(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs

    out = runs.fid(runs.load_trained(args.run), args.n, args.seed)
    print(
        f"FID {out['fid']:.2f}, KID {out['kid']:.4f} ± {out['kid_std']:.4f}, "
        f"{out['classes']}/10 classes, inception score {out['inception_score']:.2f} "
        f"({out['num_samples']} samples, epoch {out['epoch']})"
    )
    if args.json:
        print(json.dumps(out))
    return 0


def _sample(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs

    suffix = runs.load_config(args.run).recipe.sample_suffix
    kind = {".png": "PNG", ".txt": "text", ".wav": "WAV"}.get(suffix, suffix)
    path = args.out
    if path is not None:  # the user's own path: never a directory, never overwritten
        if path.is_dir():
            raise ConfigError(
                f"--out {path} is a directory; name a {kind} file, e.g. {path}/x{suffix}"
            )
        if path.suffix.lower() != suffix:
            raise ConfigError(f"--out {path} must name a {suffix} file (this run writes {kind})")
        if path.exists():
            raise ConfigError(
                f"{path} exists and ppgen does not overwrite it: choose another --out"
            )
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocking is not None:
            raise ConfigError(
                f"--out {path}: a part of the path, {blocking}, is a file, not a directory; "
                "check the path"
            )
    recipe = runs.load_config(args.run).recipe
    own = {f.name for f in dataclasses.fields(recipe.sample_options)}
    given = {k[len("sample_") :]: v for k, v in vars(args).items() if k.startswith("sample_")}
    foreign = sorted(k for k in given if k not in own)
    if foreign:
        takes = ", ".join(recipe.sample_options.flags()) or "none"
        raise ConfigError(
            f"{', '.join('--' + k.replace('_', '-') for k in foreign)} not used by a "
            f"{recipe.name} run (its sampling options: {takes})"
        )
    options = recipe.sample_options(**given) if own else None
    run = runs.load_trained(args.run, data=False)  # the run's directory is enough
    path = path or args.run / f"samples{suffix}"
    samples = runs.sample(run, args.n or recipe.sample_count, args.seed, options)
    try:
        path = run.recipe.save_samples(run, samples, path)
    except OSError as e:  # named by the user's path, not the temporary file beside it
        if e.filename and Path(e.filename).parent == path.parent:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    if path.suffix == ".txt":  # text is shown as well as written
        print(path.read_text(encoding="utf-8"))
    print(path)
    return 0


_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?|-inf|-nan", re.IGNORECASE)


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--lr -1e-3`` as ``--lr=-1e-3``: argparse reads a value that starts with ``-`` and
    is not a plain decimal (``-1e-3``, ``-inf``) as an option, and then reports a missing
    argument instead of the bad value."""
    out: list[str] = []
    for a in argv:
        prev = out[-1] if out else ""
        if _NUMBER.fullmatch(a) and prev.startswith("-") and "=" not in prev:
            if not _NUMBER.fullmatch(prev) and prev != "--":
                out[-1] = f"{prev}={a}"
                continue
        out.append(a)
    return out


_HINTS = {
    errno.ENOSPC: "free some disk space and run the command again (a training run "
    "continues from its last checkpoint with --resume)",
    errno.EACCES: "check the permissions of that path, or choose another one",
    errno.EPERM: "check the permissions of that path, or choose another one",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a directory: check the path",
    errno.EISDIR: "the path is a directory: check the path",
}


def os_error_line(e: OSError) -> str:
    """One line for an error of the environment (permissions, a full disk, a bad path):
    what failed, where, and what to do."""
    where = f": {e.filename}" if e.filename else ""
    what = e.strerror or str(e)
    hint = _HINTS.get(e.errno, "check the path and the disk, then run the command again")
    return f"{what}{where}; {hint}"


def _interrupted(args: argparse.Namespace) -> str:
    if args.command == "train" and has_checkpoint(args.out):
        return (
            f"interrupted; `ppgen train {args.model} --out {args.out} --resume` continues "
            "from the last checkpoint"
        )
    if args.command == "train":
        return "interrupted before the run's first checkpoint; nothing was saved to resume"
    return "interrupted"


def _one_line_warnings(show: Any) -> Any:
    """A ``warnings.showwarning`` that prints ppgen's own warnings
    (:class:`ConvergenceWarning`) as one line on stderr, each message once, on a line of
    its own beside a progress bar and without the source location, and passes any other
    warning to ``show``."""

    seen = set()  # each message once per command, whatever resets Python's own memory

    def show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001, ANN202
        if not issubclass(category, ConvergenceWarning):
            return show(message, category, filename, lineno, file, line)
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            # through tqdm: a progress bar on the stream is cleared first and redrawn after
            tqdm.write(f"ppgen: warning: {text}", file=file or sys.stderr)

    return show_warning


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppgen`` console script; returns the exit status (0; 2 for a
    mistake in the input or the environment, printed as one line; 130 on Ctrl-C)."""
    argv = join_negative_values([str(a) for a in (sys.argv[1:] if argv is None else argv)])
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command that refuses them, with that command's help
        leaf = ("train", args.model) if args.command == "train" else args.command
        parser.leaves[leaf].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        commands = {"train": _train, "eval": _eval, "sample": _sample, "fid": _fid}
        with warnings.catch_warnings():  # restores the caller's warning display afterwards
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return commands[args.command](args, argv)
    except PPGenError as e:
        message = " ".join(str(e).split())
    except OSError as e:  # the environment's: unreadable paths, a full disk
        message = " ".join(os_error_line(e).split())
    except KeyboardInterrupt:
        print(f"ppgen: {_interrupted(args)}", file=sys.stderr)
        return 130
    print(f"ppgen: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
