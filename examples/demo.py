"""The main job: semi-supervised M2 (Kingma et al. 2014) on MNIST with only 100 labels.

Trains M2 with the NumPyro backend for a few minutes on 50,000 training images of which 100
carry a label (10 per digit), printing the validation and test error after every epoch.
Then it writes a picture of class-conditional samples (one row per digit), a confusion
matrix and the training curves, and prints where they are. Without the MNIST files and
offline, it says so and uses scikit-learn's bundled 8x8 digits instead.

    python examples/demo.py [--minutes 4] [--labels 100] [--out runs/demo]

Each run replaces the previous demo's directory, and only that: a directory the demo did not
make (it marks its own with ``.ppgen-demo``) is refused, never deleted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ppgen import data, runs
from ppgen.cli import os_error_line
from ppgen.errors import ConfigError, DataError, PPGenError

MARK = ".ppgen-demo"  # in a directory this demo made (and may delete on its next run)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status (2 with one line on stderr for bad input)."""
    try:
        demo(argv)
    except PPGenError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"demo: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    return 0


def demo(argv: list[str] | None = None) -> None:
    """Train, evaluate and draw the pictures (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0, help="training time budget")
    parser.add_argument("--labels", type=int, default=100, help="labelled training examples")
    parser.add_argument(
        "--alpha",
        type=float,
        default=5000.0,
        help="weight of the classification term per labelled example (the paper's 0.1 N "
        "is 50 here; 5000 learns faster on a few minutes of CPU, see docs/RESULTS.md)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    args = parser.parse_args(argv)

    if args.out.exists() and not (args.out / MARK).is_file():
        if not args.out.is_dir() or any(args.out.iterdir()):
            raise ConfigError(
                f"--out {args.out} exists and was not made by the demo, which writes only into "
                "a new or empty directory (and replaces only its own): choose another --out"
            )

    dataset = args.dataset
    if dataset == "mnist":
        try:
            data.load_mnist("test")
        except DataError as e:
            print(f"MNIST is not available ({e}); using scikit-learn's 8x8 digits instead.")
            dataset = "digits"
    mnist = dataset == "mnist"
    config = runs.make_config(
        "m2",
        backend="numpyro",
        dataset=dataset,
        binarize="none",  # grey pixels, as Pyro's tutorial: faster per CPU-minute (RESULTS.md)
        labels=args.labels,
        alpha=args.alpha,
        latent=50 if mnist else 8,
        hidden=(500,) if mnist else (64,),
        activation="softplus",
        epochs=10_000,  # the time budget ends the run
        batch_size=50,  # more, smaller steps learn faster per CPU-minute (docs/RESULTS.md)
        lr=1e-3,
        seed=0,
    )
    if (args.out / MARK).is_file():
        shutil.rmtree(args.out)  # the previous demo's run
    print(
        f"training M2 on {dataset} with {args.labels} labels (NumPyro backend, alpha="
        f"{args.alpha:g}) for {args.minutes:g} minutes into {args.out} ..."
    )

    def report(record: dict) -> None:
        (args.out / MARK).touch()
        print(
            f"epoch {record['epoch'] + 1:3d}: loss {record['loss']:7.2f} nats, validation "
            f"error {100 * record['valid_error']:5.2f}%, test error "
            f"{100 * record['test_error']:5.2f}% ({record['train_seconds']:.0f} s)",
            flush=True,
        )

    runs.train(
        config,
        args.out,
        time_limit=args.minutes * 60,
        progress=False,
        on_epoch=report,
        monitor_test=True,
    )
    run = runs.load_trained(args.out)
    result = runs.evaluate(run)
    paper = "; Kingma et al. 2014 report 11.97% for M2" if mnist and args.labels == 100 else ""
    print(
        f"test error {100 * result['test_error']:.2f}% with {args.labels} labels "
        f"(best validation epoch {result['epoch']}{paper})"
    )
    for path in runs.save_pictures(run, args.out):
        print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
