"""The MNIST dataset classifier behind ppgen's FID and KID: its test accuracy and the time to
train it.

Loads ppgen's classifier from ``<data dir>/classifiers`` (``--data-dir``, else
``PPGEN_DATA``), training it there first when it is missing or corrupt (``--retrain``: always),
on MNIST read from ``--mnist-dir`` (default: the same data directory). Its test accuracy is
measured on the 10,000 MNIST test images when it is trained. The target is at least 99%
within about 5 minutes on two CPU cores (``--threads 2``, the default).

A read-only MNIST copy works with a writable ``--data-dir``:

    PPGEN_DATA=/path/to/read-only/data python benchmarks/classifier_mnist.py \
        --data-dir /tmp/ppgen-data --mnist-dir /path/to/read-only/data

Prints one JSON object as its last line (``classifier_accuracy``, ``minutes``: the training
time of this run, 0 when a stored classifier was read; ``train_minutes``: the stored one's) and
writes it to
``benchmarks/results/classifier_mnist.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, limit_threads, parse, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="where it is stored")
    parser.add_argument("--mnist-dir", type=Path, default=None, help="where MNIST is read")
    parser.add_argument("--retrain", action="store_true", help="train even if one is stored")
    parser.add_argument("--threads", type=int, default=2, help="torch compute threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parse(parser)
    limit_threads(args.threads)

    from ppgen import PPGenError
    from ppgen import classifier as ppclassifier
    from ppgen.data import load_mnist

    directory = ppclassifier.classifier_dir(args.data_dir)
    if args.retrain:
        for name in (ppclassifier.CLASSIFIER_FILE, ppclassifier.CLASSIFIER_META):
            (directory / name).unlink(missing_ok=True)
    try:
        ppclassifier.read_classifier(directory)
        trains = False
    except PPGenError:
        trains = True
    clock = Stopwatch()
    clf = ppclassifier.load_classifier(
        args.data_dir, mnist_data_dir=args.mnist_dir, progress=not args.quiet
    )
    minutes = clock.minutes() if trains else 0.0

    # The stored accuracy is re-measured here, as a check of the stored weights.
    test = load_mnist("test", data_dir=args.mnist_dir or args.data_dir)
    accuracy = float((clf.predict_proba(test.x).argmax(axis=1) == test.y).mean())
    print(
        f"MNIST classifier in {directory}: test accuracy {accuracy:.4f} (stored "
        f"{clf.accuracy:.4f}); {clf.info['epochs']} epochs, width {clf.info['width']}, "
        f"{clf.info['features']} features, trained in {clf.info['train_minutes']:.2f} min",
        flush=True,
    )
    write_result(
        "classifier_mnist",
        {
            "classifier_accuracy": accuracy,
            "stored_accuracy": clf.accuracy,
            "minutes": round(minutes, 3),
            "train_minutes": round(clf.info["train_minutes"], 3),
            "threads": args.threads,
            "classifier": {k: clf.info[k] for k in ("epochs", "width", "features", "seed")},
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
