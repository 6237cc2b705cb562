"""Semi-supervised MNIST, Kingma et al. (2014) Table 1: test error of M1, M2 and M1+M2 with
N = 100, 600, 1000 and 3000 labelled training examples.

Data: the 50,000 MNIST training images (dynamically binarized for M1, and for M2 unless
``--m2-binarize none`` trains it on the grey values), N of them
labelled, class-balanced, drawn by the run's seed; the 10,000 validation images (with
labels) select the best epoch and M1's classifier; the error is on the 10,000 test images.
Each run trains for at most ``--minutes`` of wall time (or ``--epochs``), so the figures
say what this much CPU buys, not what the models reach at convergence. The M1 VAE is
trained once and shared by every M1 and M1+M2 row.

Every run lives in ``--out/<model>-<N>-seed<k>`` (``runs/ssl_mnist`` by default); a run
that already finished there is read back, not retrained, so the benchmark can be run in
pieces, two processes at a time (``--models m2 --ns 100 --seeds 0``, ``--seeds 1``, ...),
and the table is rebuilt each time. A directory holding a run with another configuration
is refused. docs/RESULTS.md gives the commands behind its tables; the recipe is

    python benchmarks/ssl_mnist.py --alpha 5000 --batch-size 50 --minutes 15 \
        --m2-binarize none --m1-units active

Run alone, one run at a time, each run uses every core; ``--result NAME`` writes a partial
table to ``benchmarks/results/NAME.json`` instead of ``ssl_mnist.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, parse, result_name, write_result  # noqa: E402

from ppgen import data as ppdata  # noqa: E402
from ppgen import runs  # noqa: E402
from ppgen.checkpoint import has_checkpoint  # noqa: E402
from ppgen.recipes.vae import m1_features  # noqa: E402
from ppgen.semisupervised import fit_m1_classifier  # noqa: E402

# Kingma et al. 2014, Table 1 (test error %), and Pyro's SS-VAE tutorial (M2 accuracy).
PAPER = {
    "m1": {100: 11.82, 600: 5.72, 1000: 4.24, 3000: 3.49},
    "m2": {100: 11.97, 600: 4.94, 1000: 3.60, 3000: 3.92},
    "m1m2": {100: 3.33, 600: 2.59, 1000: 2.40, 3000: 2.18},
}
PYRO_TUTORIAL_M2 = {
    100: 100 * (1 - 0.9319),
    600: 100 * (1 - 0.9437),
    1000: 100 * (1 - 0.9487),
    3000: 100 * (1 - 0.9582),
}


def _train(config: runs.RunConfig, run_dir: Path, minutes: float) -> dict:
    """Train (unless already done) and return what the run took."""
    done = run_dir / "train.json"
    stored = run_dir / "config.json"
    if stored.exists() and runs.load_config(run_dir) != config:
        raise SystemExit(
            f"{run_dir} holds a run with another configuration; move it away or pass another --out"
        )
    if done.exists():
        return json.loads(done.read_text())
    if has_checkpoint(run_dir):  # an interrupted run: start it again from scratch
        import shutil

        shutil.rmtree(run_dir)
    t0 = time.perf_counter()

    def show(record: dict) -> None:
        error = record.get("valid_error")
        error = f", valid error {100 * error:.2f}%" if error is not None else ""
        print(
            f"  {run_dir.name} epoch {record['epoch'] + 1}: loss {record['loss']:.2f}{error}",
            flush=True,
        )

    result = runs.train(config, run_dir, progress=False, on_epoch=show, time_limit=minutes * 60)
    info = {
        "epochs": len(result.history),
        "minutes": (time.perf_counter() - t0) / 60,
        "best_epoch": (result.best_epoch or 0) + 1,
    }
    done.write_text(json.dumps(info))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-time cap per run")
    parser.add_argument(
        "--epochs", type=int, default=1000, help="M2 and M1+M2 epochs (the lr schedule's span)"
    )
    parser.add_argument("--m1-epochs", type=int, default=1000, help="epochs of the M1 VAE")
    parser.add_argument("--ns", default="100,600,1000,3000", help="numbers of labels")
    parser.add_argument("--draws", type=int, default=3, help="label draws (seeds) at N=100")
    parser.add_argument(
        "--seeds",
        default=None,
        help="only these label draws at N=100, e.g. 1,2 (to run draws in separate processes)",
    )
    parser.add_argument("--models", default="m1,m2,m1m2")
    parser.add_argument("--backend", choices=["numpyro", "pyro"], default="numpyro")
    parser.add_argument("--lr", type=float, default=1e-3, help="M2 and M1+M2 learning rate")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--batch-size", type=int, default=100, help="M2 and M1+M2 batch size")
    parser.add_argument("--m1-lr", type=float, default=1e-3, help="M1 VAE learning rate")
    parser.add_argument("--m1-lr-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument(
        "--m1-features",
        choices=["sample", "mean"],
        default="sample",
        help="M1+M2 trains on z1 ~ q(z1 | x) drawn every step, or on M1's posterior means",
    )
    parser.add_argument("--alpha", type=float, default=None, help="M2 classification weight")
    parser.add_argument(
        "--m1-units",
        choices=["active", "all"],
        default="all",
        help="M1+M2 models all of M1's latent units (as the paper) or only the active ones",
    )
    parser.add_argument(
        "--m2-binarize",
        choices=["dynamic", "none"],
        default="dynamic",
        help="M2's training pixels: fresh Bernoulli draws every epoch, or the grey values "
        "(as Pyro's tutorial); validation and test follow",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/ssl_mnist"))
    parser.add_argument(
        "--result",
        type=result_name,
        default="ssl_mnist",
        help="name of the JSON written to benchmarks/results/ (keep a partial table apart)",
    )
    args = parse(parser)
    clock = Stopwatch()
    ns = [int(n) for n in args.ns.split(",")]
    models = args.models.split(",")

    common = dict(backend=args.backend, dataset="mnist", latent=50, activation="softplus")
    m1_dir = args.out / "m1-vae"
    rows = []
    if "m1" in models or "m1m2" in models:
        print("M1: the VAE (600-600 softplus, z=50), trained once", flush=True)
        m1_config = runs.make_config(
            "m1",
            binarize="dynamic",
            hidden=(600, 600),
            lr=args.m1_lr,
            lr_schedule=args.m1_lr_schedule,
            epochs=args.m1_epochs,
            batch_size=100,
            seed=0,
            **common,
        )
        m1_info = _train(m1_config, m1_dir, args.minutes)
    if "m1" in models:  # M1+M2 runs compute their own features
        f = m1_features(runs.load_trained(m1_dir))

    draws = range(args.draws) if args.seeds is None else [int(k) for k in args.seeds.split(",")]
    for n in ns:
        for seed in draws if n == 100 else [0]:
            if "m1" in models:
                y = ppdata.partial_labels(f["train"].y, n, seed=seed)
                train, valid, test = f["train"], f["valid"], f["test"]
                clf, info = fit_m1_classifier(train.x, y, valid.x, valid.y, seed=seed)
                error = float((clf.predict(test.x) != test.y).mean())
                rows.append(
                    {
                        "model": "m1",
                        "labels": n,
                        "seed": seed,
                        "test_error": error,
                        "valid_error": info["valid_error"],
                        "classifier": info["classifier"],
                        "C": info["C"],
                        **m1_info,
                    }
                )
                print(f"m1 N={n} seed={seed}: test error {100 * error:.2f}%", flush=True)
            for model in ("m2", "m1m2"):
                if model not in models:
                    continue
                if model == "m2":
                    own = {"binarize": args.m2_binarize}
                else:
                    own = {
                        "m1_run": str(m1_dir),
                        "m1_features": args.m1_features,
                        "m1_units": args.m1_units,
                    }
                config = runs.make_config(
                    model,
                    hidden=(500,),
                    lr=args.lr,
                    lr_schedule=args.lr_schedule,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    seed=seed,
                    labels=n,
                    alpha=args.alpha,
                    **{**common, **own},
                )
                run_dir = args.out / f"{model}-{n}-seed{seed}"
                info = _train(config, run_dir, args.minutes)
                result = runs.evaluate(runs.load_trained(run_dir))
                rows.append(
                    {
                        "model": model,
                        "labels": n,
                        "seed": seed,
                        "test_error": result["test_error"],
                        "valid_error": result["valid_error"],
                        **info,
                    }
                )
                print(
                    f"{model} N={n} seed={seed}: test error {100 * result['test_error']:.2f}% "
                    f"({info['epochs']} epochs, {info['minutes']:.1f} min)",
                    flush=True,
                )

    table = {}
    for model in models:
        for n in ns:
            errors = [
                100 * r["test_error"] for r in rows if r["model"] == model and r["labels"] == n
            ]
            if errors:
                table[f"{model}_{n}"] = {
                    "error_percent_mean": statistics.mean(errors),
                    "error_percent_std": statistics.stdev(errors) if len(errors) > 1 else None,
                    "draws": len(errors),
                    "paper": PAPER[model][n],
                    **({"pyro_tutorial": PYRO_TUTORIAL_M2[n]} if model == "m2" else {}),
                }
    trained = [r for r in rows if r["model"] != "m1"] or rows

    def mean_error(key: str) -> float | None:
        return table[key]["error_percent_mean"] / 100 if key in table else None

    write_result(
        args.result,
        {
            "m2_error_100": mean_error("m2_100"),
            "m1m2_error_100": mean_error("m1m2_100"),
            "m2_error_3000": mean_error("m2_3000"),
            "minutes_per_run": max(r["minutes"] for r in trained) if trained else None,
            "table": table,
            "runs": rows,
            "setting": f"{args.backend}; M1 600-600 softplus z=50, Adam({args.m1_lr}, "
            f"{args.m1_lr_schedule} over {args.m1_epochs} epochs), batch 100, + sklearn "
            "classifier chosen on validation; M2 and M1+M2 one hidden layer of "
            f"500 softplus, z=50, Adam({args.lr}, {args.lr_schedule} over {args.epochs} epochs), "
            f"alpha={'0.1 N' if args.alpha is None else args.alpha}, batch {args.batch_size} "
            f"unlabelled + {args.batch_size} labelled; M2 on "
            f"{'dynamically binarized' if args.m2_binarize == 'dynamic' else 'grey'} pixels; "
            f"M1+M2 on M1's "
            f"{'samples z1 ~ q(z1|x)' if args.m1_features == 'sample' else 'posterior means'} "
            f"({'active units only' if args.m1_units == 'active' else 'all units'}); "
            f"best epoch by validation error; at most {args.minutes:g} min per run",
            "wall_minutes": clock.minutes(),
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
