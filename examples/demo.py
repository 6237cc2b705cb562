"""The main job: train a VAE on MNIST with the NumPyro backend for about two minutes.

Writes a grid of samples and a grid of reconstructions as PNG files and prints where they
are. Without the MNIST files and offline, it says so and uses scikit-learn's bundled 8x8
digits instead.

    python examples/demo.py [--minutes 2] [--out runs/demo]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ppgen import data, runs
from ppgen.errors import DataError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    parser.add_argument("--k", type=int, default=500, help="importance samples for test NLL")
    parser.add_argument("--limit", type=int, default=1000, help="test examples for the NLL")
    args = parser.parse_args(argv)

    dataset = args.dataset
    if dataset == "mnist":
        try:
            data.load_mnist("test")
        except DataError as e:
            print(f"MNIST is not available ({e}); using scikit-learn's 8x8 digits instead.")
            dataset = "digits"
    config = runs.RunConfig(
        model="vae",
        backend="numpyro",
        dataset=dataset,
        binarize="dynamic",
        latent=50 if dataset == "mnist" else 8,
        hidden=(200, 200) if dataset == "mnist" else (64,),
        epochs=10_000,
        batch_size=100,
        lr=1e-3,
        seed=0,
    )
    if args.out.exists():
        shutil.rmtree(args.out)
    print(
        f"training a VAE on {dataset} (NumPyro backend) for {args.minutes:g} minutes "
        f"into {args.out} ..."
    )
    result, _ = runs.train(config, args.out, time_limit=args.minutes * 60)
    last = result.history[-1]
    print(
        f"{len(result.history)} epochs: train loss {last['loss']:.2f} nats, "
        f"validation loss {last.get('valid_loss', float('nan')):.2f} nats"
    )

    run = runs.load_trained(args.out)
    ev = runs.evaluate(run, k=args.k, limit=args.limit, progress=False)
    print(
        f"test NLL {ev['test_nll']:.2f} nats (k={ev['k']}, first {ev['n']} test images; "
        f"`ppgen eval {args.out} --k 5000` for the full estimate)"
    )
    paths = runs.save_pictures(run, args.out)
    for path in paths:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
