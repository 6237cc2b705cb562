"""Mode collapse on the 2-D mixtures: modes covered and the share of high-quality samples of
each likelihood-free objective, on PacGAN's 25-Gaussian grid and VEEGAN's 8-Gaussian ring.

Protocol (VEEGAN, Srivastava et al. 2017; PacGAN, Lin et al. 2018): after training, 2,500
samples are drawn; a sample is high quality when it lies within three standard deviations
of its nearest mode, and a mode is covered when it receives at least ``min_count``
high-quality samples (``ppgen.sample_quality``). Each run is ``ppgen train <recipe>`` through
``ppgen.runs`` (the same code as the command line), the checkpoint kept being the best
validation epoch (more modes first, then more high-quality samples, on 2,500 samples of a
fixed seed), scored on a fresh draw of 2,500.

Settings of every run (the recipes' defaults except where named, see ``OBJECTIVES``): an
MLP generator and critic of ``--hidden`` widths (default 256, 256, 256), ``z`` of width 2,
batch 100, Adam with betas (0.5, 0.9) for the adversarial losses, lr 1e-3 (WGAN-GP 5e-4 with
``n_critic`` 5 and the toy penalty weight 0.1 of Gulrajani et al.'s code); MMD with Gaussian
bandwidths 0.05 to 2; Sinkhorn with epsilon 0.1, p = 2, unbalanced
(rho 1), batches of 500.
An epoch is 20,000 points (200 steps of 100); ``--epochs`` per seed.

    python benchmarks/gan_toy.py                       # the full table, 3 seeds
    python benchmarks/gan_toy.py --quick               # smoke test: 1 seed, 2 epochs
                                                       # (gan_toy_quick.json: the table stays)

JSON keys: ``modes_25_<objective>``, ``hq_25_<objective>``, ``modes_8_<objective>``,
``hq_8_<objective>`` (means over seeds), ``runs`` (every run's figures), ``minutes``.
Pictures of seed 0: ``benchmarks/results/<name>/<dataset>_<objective>.png``, ``<name>`` the
JSON's (``gan_toy``; ``--result NAME``; ``NAME_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    hardware,
    limit_threads,
    parse,
    quick_settings,
    result_name,
    write_result,
)

#: objective name -> (recipe, recipe options, learning rate, batch size, share of --epochs)
OBJECTIVES = {
    "nonsaturating": ("gan", {"loss": "nonsaturating"}, 1e-3, 100, 1.0),
    "wgan-gp": ("gan", {"loss": "wgan-gp", "n_critic": 5, "gradient_penalty": 0.1}, 5e-4, 100, 1.0),
    "hinge": ("gan", {"loss": "hinge"}, 1e-3, 100, 1.0),
    "lsgan": ("gan", {"loss": "lsgan"}, 1e-3, 100, 1.0),
    "mmd": ("mmd", {}, 1e-3, 100, 1.0),
    # Minibatch OT pairs a batch's samples with its data points afresh every step, and two
    # batches from 25 modes never hold the same count in each mode: balanced transport carries
    # the surplus to other modes on every step and the generator learns the average of those
    # pairings (0-2 modes of 25 in 3 seeds). Unbalanced transport (rho 1: mass moves up to
    # about a distance 1, half the spacing of the modes; Fatras et al. 2021) keeps it local.
    "sinkhorn": ("sinkhorn", {"epsilon": 0.1, "rho": 1.0}, 1e-3, 500, 1.0),
}
DATASETS = {"grid25": 25, "ring8": 8}


def run_one(objective: str, dataset: str, seed: int, args, out: Path) -> dict:
    from ppgen import runs
    from ppgen.config import RunConfig
    from ppgen.recipes.registry import get_recipe

    name, options, lr, batch_size, share = OBJECTIVES[objective]
    recipe = get_recipe(name)
    options = recipe.options(hidden=tuple(args.hidden), **options)
    config = RunConfig(
        model=name, backend=args.backend, dataset=dataset,
        epochs=max(1, round(share * args.epochs)), batch_size=batch_size, lr=lr, seed=seed,
        options=options,
    )  # fmt: skip
    t0 = time.perf_counter()
    runs.train(config, out, progress=False)
    minutes = (time.perf_counter() - t0) / 60
    run = runs.load_trained(out)
    figures = runs.evaluate(run, limit=None)
    if seed == 0:
        pictures = RESULTS / args.name
        samples = recipe.sample(run, 2500, seed=1)
        path = pictures / f"{dataset}_{objective}.png"
        if path.exists():
            path.unlink()  # ours: a rerun replaces the picture it wrote
        recipe.save_samples(run, samples, path)
    return {
        "objective": objective, "dataset": dataset, "seed": seed, "modes": figures["modes"],
        "hq_share": figures["hq_share"], "best_epoch": figures["epoch"],
        "minutes": round(minutes, 2),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256, 256])
    parser.add_argument("--backend", default="numpyro", choices=("pyro", "numpyro"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--result", type=result_name, default="gan_toy", help="name of the JSON result"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs (smoke test)")
    args = parse(parser)
    if args.quick:
        quick_settings(parser, args, {"seeds": 1, "epochs": 2})
    # a check of the script never replaces the full table or its pictures
    args.name = f"{args.result}_quick" if args.quick else args.result
    limit_threads(args.threads)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            for objective in args.objectives:
                for seed in range(args.seeds):
                    out = Path(tmp) / f"{dataset}_{objective}_{seed}"
                    row = run_one(objective, dataset, seed, args, out)
                    print(row, flush=True)
                    rows.append(row)
    result = {"runs": rows, "epochs": args.epochs, "seeds": args.seeds,
              "hidden": args.hidden, "backend": args.backend}  # fmt: skip
    for dataset, k in DATASETS.items():
        for objective in args.objectives:
            mine = [r for r in rows if r["dataset"] == dataset and r["objective"] == objective]
            if mine:
                result[f"modes_{k}_{objective}"] = statistics.mean(r["modes"] for r in mine)
                result[f"hq_{k}_{objective}"] = statistics.mean(r["hq_share"] for r in mine)
    result["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    result["hardware"] = hardware()
    write_result(args.name, result)


if __name__ == "__main__":
    main()
