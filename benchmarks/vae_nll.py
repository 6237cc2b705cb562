"""Test NLL of VAE and IWAE on dynamically binarized MNIST (Burda et al. 2015 setting).

Architecture 784-200-200-50 with tanh units, Bernoulli decoder, Adam with a cosine-decayed
learning rate, trained on the 60k training set with a fresh binarization every epoch, and
evaluated on the 10k test set (binarized once, seed 0) with k=5000 importance samples.
Each model gets a wall-clock budget: the number of epochs is set from a timed probe so that
the cosine schedule ends on time. To compare IWAE(k=5) with a VAE *trained for the same
number of epochs*, a second VAE run with exactly that many epochs (and the same schedule)
is also trained and evaluated. Paper (3280 epochs): VAE 86.76, IWAE k=5 85.54, k=50 84.78.

    python benchmarks/vae_nll.py --vae-minutes 30 --iwae5-minutes 20 --iwae50-minutes 10
    python benchmarks/vae_nll.py --vae-minutes 0 --iwae5-minutes 0 --iwae50-minutes 5 \
        --result vae_nll_gpu       # IWAE(k=50) alone (on a GPU); 0 minutes skip a model
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, parse, result_name, train_fresh, write_result  # noqa: E402

from ppgen import runs  # noqa: E402
from ppgen.driver import read_metrics  # noqa: E402
from ppgen.recipes.base import BACKENDS  # noqa: E402

PAPER = {"vae": 86.76, "iwae5": 85.54, "iwae50": 84.78}


def config(objective: str, k: int, epochs: int, args: argparse.Namespace) -> runs.RunConfig:
    return runs.make_config(
        "vae",
        backend=args.backend,
        dataset="mnist",
        binarize="dynamic",
        objective=objective,
        k=k,
        latent=50,
        hidden=(200, 200),
        activation="tanh",
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        seed=args.seed,
        train_split="train_full",
    )


def seconds_per_epoch(objective: str, k: int, args: argparse.Namespace, scratch: Path) -> float:
    """Time the second of two probe epochs (the first includes compilation)."""
    out = scratch / f"probe-{objective}{k}"
    runs.train(config(objective, k, 2, args), out, progress=False)
    return read_metrics(out)[-1]["train_seconds"]


def train_and_eval(name: str, cfg: runs.RunConfig, args: argparse.Namespace) -> dict:
    result, run, minutes = train_fresh(cfg, args.out / name)
    ev = runs.evaluate(run, k=args.k, limit=args.eval_limit, progress=True)
    print(
        f"{name}: {len(result.history)} epochs in {minutes:.1f} min, test NLL "
        f"{ev['test_nll']:.2f} (k={args.k}), ELBO {ev['test_elbo']:.2f}",
        flush=True,
    )
    return {
        "epochs": len(result.history),
        "train_minutes": minutes,
        "eval_minutes": ev["seconds"] / 60,
        **ev,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=BACKENDS, default="numpyro")
    p.add_argument("--vae-minutes", type=float, default=30.0)
    p.add_argument("--iwae5-minutes", type=float, default=20.0)
    p.add_argument("--iwae50-minutes", type=float, default=10.0, help="0 skips IWAE(k=50)")
    p.add_argument("--k", type=int, default=5000, help="importance samples for test NLL")
    p.add_argument("--eval-limit", type=int, default=None, help="first N test examples only")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_vae_nll"))
    p.add_argument("--result", type=result_name, default="vae_nll",
                   help="name of the JSON written to benchmarks/results/ (a partial or GPU "
                   "run: keep the full table apart)")  # fmt: skip
    args = parse(p)

    clock = Stopwatch()
    plan = {
        "vae": ("elbo", 1, args.vae_minutes),
        "iwae5": ("iwae", 5, args.iwae5_minutes),
        "iwae50": ("iwae", 50, args.iwae50_minutes),
    }
    with tempfile.TemporaryDirectory() as scratch:
        speed = {
            name: seconds_per_epoch(obj, k, args, Path(scratch))
            for name, (obj, k, minutes) in plan.items()
            if minutes > 0
        }
    print("seconds per epoch:", {k: round(v, 2) for k, v in speed.items()}, flush=True)

    results = {}
    for name, (objective, k, minutes) in plan.items():
        if minutes > 0:
            epochs = max(1, math.floor(minutes * 60 / speed[name]))
            results[name] = train_and_eval(name, config(objective, k, epochs, args), args)
    # The VAE after as many epochs (same schedule) as IWAE(k=5) had: the fair comparison.
    matched = None
    if "iwae5" in results:
        matched = train_and_eval(
            "vae_at_iwae5_epochs", config("elbo", 1, results["iwae5"]["epochs"], args), args
        )

    get = lambda name, key: results[name][key] if name in results else None  # noqa: E731
    write_result(
        args.result,
        {
            "vae_nll": get("vae", "test_nll"),
            "iwae5_nll": get("iwae5", "test_nll"),
            "iwae50_nll": get("iwae50", "test_nll"),
            "vae_epochs": get("vae", "epochs"),
            "iwae5_epochs": get("iwae5", "epochs"),
            "iwae50_epochs": get("iwae50", "epochs"),
            "vae_nll_at_iwae5_epochs": matched and matched["test_nll"],
            "iwae5_gain_over_vae_same_epochs": matched
            and matched["test_nll"] - results["iwae5"]["test_nll"],
            "minutes": clock.minutes(),
            "paper_nll": PAPER,
            "runs": {**results, **({"vae_at_iwae5_epochs": matched} if matched else {})},
            "seconds_per_epoch": speed,
            "setting": "784-200-200-50 tanh, dynamic binarization, 60k train, batch "
            f"{args.batch_size}, Adam {args.lr} cosine, {args.backend} backend, "
            f"test NLL with k={args.k}",
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
