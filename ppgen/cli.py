"""The ``ppgen`` command line: train, evaluate and sample generative models.

    ppgen train vae --backend numpyro --dataset mnist --epochs 10 --out runs/vae
    ppgen train m2 --help                                     (what M2 takes)
    ppgen eval runs/vae --k 5000 --json
    ppgen train m2 --labels 100 --epochs 50 --out runs/m2     (semi-supervised, M2)
    ppgen eval runs/m2 --json                                 (test classification error)
    ppgen sample runs/vae -n 64

Every model is a registered recipe (``ppgen.recipes``); ``ppgen train MODEL`` takes the
settings every run shares and the model's own options. Errors caused by input (unknown
options, bad values, missing data, corrupt checkpoints) are printed as one line on stderr
with exit status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ppgen.data import DATASETS
from ppgen.errors import ConfigError, PPGenError
from ppgen.inference.optim import LR_SCHEDULES
from ppgen.recipes import RECIPES, Recipe
from ppgen.recipes.base import BACKENDS, positive

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and name the help to read."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _shared_arguments(p: argparse.ArgumentParser, recipe: Recipe) -> None:
    """The settings of every run, with the recipe's defaults."""
    defaults = recipe.defaults
    g = p.add_argument_group("run settings")
    g.add_argument("--backend", choices=BACKENDS, default="numpyro")
    g.add_argument("--dataset", choices=recipe.datasets or tuple(DATASETS), default="mnist")
    g.add_argument(
        "--epochs",
        type=positive(int),
        default=None,
        help="total epochs (default 10; with --resume, raises the total)",
    )
    g.add_argument("--batch-size", type=positive(int), default=defaults.get("batch_size", 100))
    g.add_argument("--lr", type=positive(float), default=defaults.get("lr", 1e-3))
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--eval-every", type=positive(int), default=1)
    g.add_argument(
        "--patience",
        type=positive(int),
        default=None,
        help="stop after this many evaluations without improvement",
    )
    g.add_argument(
        "--full-train",
        action="store_true",
        help="train on all training examples (no validation split)",
    )
    g.add_argument(
        "--devices",
        type=positive(int),
        default=1,
        help="data-parallel devices: processes under torchrun (Pyro) or a JAX mesh (NumPyro)",
    )
    g.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard events to OUT/tensorboard (pip install 'ppgen[tensorboard]')",
    )
    g.add_argument("--out", type=Path, required=True, help="run directory")
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The ``ppgen`` argument parser: one ``train`` sub-command per registered model."""
    parser = _Parser(
        prog="ppgen",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Data: MNIST is read from $PPGEN_DATA (default ~/.cache/ppgen).",
    )
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="{train,eval,sample}"
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
            recipe.name,
            help=recipe.help,
            description=recipe.description,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        _shared_arguments(m, recipe)
        recipe.options.add_arguments(m)

    p = parser.leaves["eval"] = sub.add_parser(
        "eval", help="test figures of a run (NLL and ELBO, or classification error)"
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument(
        "--k", type=positive(int), default=5000, help="importance samples (latent-variable models)"
    )
    p.add_argument(
        "--limit",
        type=positive(int),
        default=None,
        help="evaluate on the first N test examples only",
    )
    p.add_argument("--batch-size", type=positive(int), default=100)
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.add_argument("--json", action="store_true", help="end with one JSON line")

    p = parser.leaves["sample"] = sub.add_parser(
        "sample", help="write a PNG grid of samples from a run"
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("-n", type=positive(int), default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default RUN/samples.png)")
    return parser


# Run settings whose flag holds the config's value as it is.
_AS_GIVEN = (
    *("backend", "dataset", "batch_size", "lr", "lr_schedule", "seed"),
    *("eval_every", "patience", "devices", "tensorboard"),
)


def _config(args: argparse.Namespace):
    from ppgen import runs

    recipe = RECIPES[args.model]
    if args.resume:
        config = runs.load_config(args.out)
        if config.model != args.model:
            raise ConfigError(
                f"{args.out} holds a {config.model} run; resume it with `ppgen train "
                f"{config.model} --out {args.out} --resume`"
            )
        return dataclasses.replace(
            config,
            epochs=max(config.epochs, args.epochs or 0),
            tensorboard=config.tensorboard or args.tensorboard,
        )
    return runs.RunConfig(
        model=args.model,
        epochs=args.epochs or 10,
        train_split="train_full" if args.full_train else "train",
        options=recipe.options.from_args(args),
        **{name: getattr(args, name) for name in _AS_GIVEN},
    )


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs
    from ppgen.launch import is_main_process, prepare_devices

    config = _config(args)
    status = prepare_devices(config.backend, config.devices, argv)
    if status is not None:
        return status
    result = runs.train(config, args.out, resume=args.resume, progress=not args.quiet)
    if not is_main_process():
        return 0
    paths = runs.save_pictures(runs.load_trained(args.out))
    last = result.history[-1] if result.history else {}
    error = f", validation error {100 * last['valid_error']:.2f}%" if "valid_error" in last else ""
    print(
        f"trained {config.model} ({config.backend}) for {len(result.history)} epochs; "
        f"last train loss {last.get('loss', float('nan')):.2f} nats{error}, best epoch "
        f"{(result.best_epoch or 0) + 1}{' (stopped early)' if result.stopped_early else ''}"
    )
    for path in paths:
        print(f"wrote {path}")
    return 0


def _eval(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import runs

    run = runs.load_trained(args.run, "BEST" if args.checkpoint == "best" else "LATEST")
    out = runs.evaluate(
        run, k=args.k, limit=args.limit, batch_size=args.batch_size, progress=not args.json
    )
    print(run.recipe.summary(out))
    if args.json:
        print(json.dumps(out))
    return 0


def _sample(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from ppgen import plots, runs

    run = runs.load_trained(args.run)
    path = args.out or args.run / "samples.png"
    plots.save_image_grid(runs.sample(run, args.n, args.seed), path, run.data.image_shape)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppgen`` console script; returns the exit status."""
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command that refuses them, with that command's help
        leaf = ("train", args.model) if args.command == "train" else args.command
        parser.leaves[leaf].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return {"train": _train, "eval": _eval, "sample": _sample}[args.command](args, argv)
    except PPGenError as e:
        print("ppgen: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppgen: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
