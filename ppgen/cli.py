"""The ``ppgen`` command line: train, evaluate and sample generative models.

    ppgen train vae --backend numpyro --dataset mnist --epochs 10 --out runs/vae
    ppgen eval runs/vae --k 5000 --json
    ppgen train m2 --labels 100 --epochs 50 --out runs/m2     (semi-supervised, M2)
    ppgen eval runs/m2 --json                                 (test classification error)
    ppgen sample runs/vae -n 64

Errors caused by input (unknown options, bad values, missing data, corrupt checkpoints)
are printed as one line on stderr with exit status 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ppgen.errors import PPGenError

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and name the help to read."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 200,200, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"layer sizes must be positive, got {text!r}")
    return sizes


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive value, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``ppgen`` argument parser."""
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
        description="Train a model; metrics, checkpoints and pictures go to --out.",
    )
    p.add_argument(
        "model",
        choices=["vae", "hvae", "m1", "m2", "m1m2"],
        help="vae: one stochastic layer; hvae: two (Burda et al. 2015); m1, m2, m1m2: "
        "semi-supervised models of Kingma et al. 2014 (m1: a VAE whose features feed a "
        "classifier; m2: the class is a latent variable; m1m2: m2 on an m1 run's features)",
    )
    p.add_argument("--backend", choices=["pyro", "numpyro"], default="numpyro")
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    p.add_argument(
        "--binarize",
        choices=["dynamic", "static", "none"],
        default="dynamic",
        help="dynamic: fresh Bernoulli pixels every epoch (default); static: drawn once; "
        "none: grey values, scored by the Bernoulli cross-entropy (m2 only: as Pyro's "
        "tutorial, and faster per CPU-minute, see docs/RESULTS.md)",
    )
    p.add_argument("--objective", choices=["elbo", "iwae"], default="elbo")
    p.add_argument(
        "--k",
        type=_positive(int),
        default=1,
        help="particles: samples per example for the ELBO or the IWAE bound",
    )
    p.add_argument("--analytic-kl", action="store_true", help="closed-form KL in the ELBO")
    p.add_argument(
        "--kl-warmup",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="anneal the ELBO's KL weight linearly from 0 to 1 over EPOCHS",
    )
    p.add_argument(
        "--labels",
        type=_positive(int),
        default=100,
        help="m1/m2/m1m2: labelled training examples (class-balanced, drawn by --seed)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="m2/m1m2: weight of the classification term per labelled example "
        "(default: the paper's 0.1 N, i.e. 0.1 * N / labels)",
    )
    p.add_argument(
        "--labelled-batch-size",
        type=_positive(int),
        default=None,
        help="m2/m1m2: labelled examples per step (default: --batch-size)",
    )
    p.add_argument("--m1", type=Path, default=None, help="m1m2: the trained m1 run directory")
    p.add_argument(
        "--m1-features",
        choices=["sample", "mean"],
        default="sample",
        help="m1m2: train on z1 ~ q(z1 | x) drawn afresh every step (default, as the paper) "
        "or on M1's posterior means",
    )
    p.add_argument(
        "--m1-units",
        choices=["active", "all"],
        default="all",
        help="m1m2: model all of M1's latent units (default, as the paper) or only the active "
        "ones, whose posterior mean varies over the training images",
    )
    p.add_argument("--latent", type=_positive(int), default=50)
    p.add_argument(
        "--hidden",
        type=_hidden,
        default=None,
        help="e.g. 200,200 (default: 200,200 for vae/hvae, 600,600 for m1, 500 for m2/m1m2)",
    )
    p.add_argument(
        "--activation",
        choices=["tanh", "relu", "softplus", "elu"],
        default=None,
        help="default: tanh for vae/hvae, softplus for m1/m2/m1m2 (as the papers)",
    )
    p.add_argument(
        "--epochs",
        type=_positive(int),
        default=None,
        help="total epochs (default 10; with --resume, raises the total)",
    )
    p.add_argument("--batch-size", type=_positive(int), default=100)
    p.add_argument(
        "--lr", type=_positive(float), default=None, help="default 1e-3 (3e-4 for m2/m1m2)"
    )
    p.add_argument(
        "--lr-schedule", choices=["constant", "cosine", "exponential"], default="constant"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=_positive(int), default=1)
    p.add_argument(
        "--patience",
        type=_positive(int),
        default=None,
        help="stop after this many evaluations without improvement",
    )
    p.add_argument(
        "--full-train", action="store_true", help="train on all 60k examples (no validation split)"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "eval",
        help="test NLL (importance sampling) and ELBO of a run; test error of m1/m2/m1m2",
    )
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("--k", type=_positive(int), default=5000, help="importance samples")
    p.add_argument(
        "--limit",
        type=_positive(int),
        default=None,
        help="evaluate on the first N test examples only",
    )
    p.add_argument("--batch-size", type=_positive(int), default=100)
    p.add_argument("--checkpoint", choices=["best", "latest"], default="best")
    p.add_argument("--json", action="store_true", help="end with one JSON line")

    p = sub.add_parser("sample", help="write a PNG grid of samples from a run")
    p.add_argument("run", type=Path, help="run directory")
    p.add_argument("-n", type=_positive(int), default=64, help="number of samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="PNG path (default RUN/samples.png)")
    return parser


def _train(args: argparse.Namespace) -> None:
    from ppgen import runs

    if args.resume:
        config = runs.load_config(args.out)
        config.epochs = max(config.epochs, args.epochs or 0)
    else:
        defaults = runs.MODEL_DEFAULTS[args.model]
        config = runs.RunConfig(
            model=args.model,
            backend=args.backend,
            dataset=args.dataset,
            binarize=args.binarize,
            objective=args.objective,
            k=args.k,
            analytic_kl=args.analytic_kl,
            kl_warmup=args.kl_warmup,
            latent=args.latent,
            hidden=args.hidden or defaults["hidden"],
            activation=args.activation or defaults["activation"],
            epochs=args.epochs or 10,
            batch_size=args.batch_size,
            lr=args.lr or defaults["lr"],
            labels=args.labels,
            alpha=args.alpha,
            labelled_batch_size=args.labelled_batch_size,
            m1_run=None if args.m1 is None else str(args.m1),
            m1_sample=args.m1_features == "sample",
            m1_units=args.m1_units,
            lr_schedule=args.lr_schedule,
            seed=args.seed,
            eval_every=args.eval_every,
            patience=args.patience,
            train_split="train_full" if args.full_train else "train",
        )
    result, _ = runs.train(config, args.out, resume=args.resume, progress=not args.quiet)
    paths = runs.save_pictures(runs.load_trained(args.out), args.out)
    last = result.history[-1] if result.history else {}
    error = f", validation error {100 * last['valid_error']:.2f}%" if "valid_error" in last else ""
    print(
        f"trained {config.model} ({config.backend}) for {len(result.history)} epochs; "
        f"last train loss {last.get('loss', float('nan')):.2f} nats{error}, best epoch "
        f"{(result.best_epoch or 0) + 1}{' (stopped early)' if result.stopped_early else ''}"
    )
    for path in paths:
        print(f"wrote {path}")


def _eval(args: argparse.Namespace) -> None:
    from ppgen import runs

    run = runs.load_trained(args.run, "BEST" if args.checkpoint == "best" else "LATEST")
    if run.config.model in runs.SEMI_SUPERVISED:
        out = runs.evaluate_classifier(run)
        print(
            f"test error {100 * out['test_error']:.2f}% ({run.config.model}, "
            f"{out['labels']} labels, {out['n']} test examples, epoch {out['epoch']})"
        )
        if args.json:
            print(json.dumps(out))
        return
    out = runs.evaluate(
        run, k=args.k, limit=args.limit, batch_size=args.batch_size, progress=not args.json
    )
    print(
        f"test NLL {out['test_nll']:.2f} ± {out['test_nll_stderr']:.2f} nats "
        f"({out['test_bits_per_dim']:.4f} bits/dim), test ELBO {out['test_elbo']:.2f} nats; "
        f"k={out['k']}, {out['n']} examples, epoch {out['epoch']}, {out['seconds']:.0f} s"
    )
    if args.json:
        print(json.dumps(out))


def _sample(args: argparse.Namespace) -> None:
    from ppgen import plots, runs

    run = runs.load_trained(args.run)
    path = args.out or args.run / "samples.png"
    plots.save_image_grid(runs.sample(run, args.n, args.seed), path, run.splits.test.image_shape)
    print(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppgen`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        {"train": _train, "eval": _eval, "sample": _sample}[args.command](args)
    except PPGenError as e:
        print("ppgen: error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppgen: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
