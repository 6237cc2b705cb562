"""Flow-GAN (Grover, Dhar & Ermon 2018) on MNIST: one flow fitted by maximum likelihood, by
an adversarial loss alone, and by the hybrid (adversarial + lambda x NLL); the exact test NLL
and the FID of each.

The paper's point: adversarial training alone gives samples of good quality but very poor
likelihoods, maximum likelihood the reverse, and the hybrid most of both. Bars (issue 14):
``nll_hybrid < nll_adv`` and ``fid_hybrid < fid_mle``.

Protocol: the same NICE flow (``--layers`` additive couplings with MLP conditioners of
``--hidden``, the final diagonal scaling, the logit map; dequantised 8-bit pixels, the NLL in
nats per image of the 256-level data, bits/dim beside it) trains through ``ppgen.runs`` (the
command line's code) for at most ``--minutes`` of this machine each: ``ppgen train flow``
(MLE), ``ppgen train flowgan --lambda 0`` (WGAN-GP alone) and ``ppgen train flowgan --lambda
LAMBDA`` (hybrid), the checkpoint kept being the best validation epoch (the NLL for MLE and the
hybrid, FID of 2,000 samples for adversarial training alone). Then: the exact NLL of MNIST's
10,000 test images (one fixed dequantisation draw), and FID and KID of 10,000 samples
against them with ppgen's dataset classifier (``ppgen.classifier``).

    python benchmarks/flowgan.py                     # 10 minutes a model
    python benchmarks/flowgan.py --minutes 2

JSON keys: ``nll_mle``, ``nll_adv``, ``nll_hybrid`` (nats per image), ``bpd_<name>``,
``fid_mle``, ``fid_adv``, ``fid_hybrid``, ``kid_<name>``, ``lambda``, ``minutes``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, hardware, limit_threads, parse, result_name, write_result  # noqa: E402

NAMES = ("mle", "adv", "hybrid")


def run_model(name: str, args, out: Path, classifier) -> dict:
    from ppgen import plots, runs
    from ppgen.classifier import image_sample_metrics
    from ppgen.config import RunConfig
    from ppgen.data import load_dataset
    from ppgen.recipes.flow import FlowRecipe
    from ppgen.recipes.registry import get_recipe

    flow = {"flow": "nice", "layers": args.layers, "hidden": tuple(args.hidden)}
    if name == "mle":
        recipe, options, lr = get_recipe("flow"), flow, args.lr_mle
    else:
        weight = 0.0 if name == "adv" else args.lam
        recipe = get_recipe("flowgan")
        options = {**flow, "likelihood_weight": weight, "n_critic": args.n_critic,
                   "lr_critic": args.lr_critic, "keep": args.keep}  # fmt: skip
        lr = args.lr
    config = RunConfig(
        model=recipe.name, backend=args.backend, dataset="mnist", epochs=1000,
        batch_size=args.batch_size, lr=lr, seed=args.seed, options=recipe.options(**options),
    )  # fmt: skip
    t0 = time.perf_counter()
    runs.train(config, out, progress=False, time_limit=60 * args.minutes)
    minutes = (time.perf_counter() - t0) / 60
    trained = len((out / "metrics.jsonl").read_text().splitlines())  # epochs in the budget
    run = runs.load_trained(out)  # the best validation epoch's checkpoint
    nll = FlowRecipe.evaluate(recipe, run, progress=False)  # the exact test NLL
    samples = recipe.sample(run, 10_000, seed=args.seed)  # images in [0, 1]
    test = load_dataset("mnist", "test").x
    figures = image_sample_metrics(samples, test, classifier)
    if args.seed == 0:  # the pictures are seed 0's
        path = RESULTS / "flowgan" / f"{name}.png"
        if path.exists():
            path.unlink()  # ours: a rerun replaces the picture it wrote
        plots.save_image_grid(samples[:64], path, (28, 28))
    return {"name": name, "epochs_trained": trained, "epoch_kept": run.epoch + 1,
            "train_minutes": minutes,
            "nll": nll["test_nll"], "nll_stderr": nll["test_nll_stderr"],
            "bpd": nll["test_bits_per_dim"],
            **{k: figures[k] for k in ("fid", "kid", "kid_std", "classes")}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(NAMES), choices=NAMES)
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget a model")
    parser.add_argument("--lam", type=float, default=0.01, help="lambda of the hybrid")
    parser.add_argument("--layers", type=int, default=4, help="NICE's coupling layers")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-4, help="the flow's (flowgan)")
    parser.add_argument("--lr-critic", type=float, default=0.0, help="the critic's (0: --lr)")
    parser.add_argument("--lr-mle", type=float, default=1e-3, help="the MLE flow's")
    parser.add_argument("--keep", default="auto", choices=("auto", "nll", "fid"),
                        help="flowgan's kept checkpoint: auto (the hybrid by its NLL, "
                        "adversarial alone by FID), or nll or fid for both")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numpyro", choices=("pyro", "numpyro"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--result", type=result_name, default="flowgan")
    args = parse(parser)
    limit_threads(args.threads)
    from ppgen.classifier import load_classifier

    classifier = load_classifier()
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows.append(run_model(name, args, Path(tmp) / name, classifier))
            print(rows[-1], flush=True)
    result = {"models": rows, "lambda": args.lam, "minutes_per_model": args.minutes,
              "lr": args.lr, "lr_critic": args.lr_critic or args.lr, "lr_mle": args.lr_mle,
              "keep": args.keep, "n_critic": args.n_critic, "batch_size": args.batch_size,
              "flow": {"name": "nice", "layers": args.layers, "hidden": args.hidden},
              "backend": args.backend}  # fmt: skip
    for row in rows:
        for key in ("nll", "bpd", "fid", "kid"):
            result[f"{key}_{row['name']}"] = row[key]
    result["classifier_accuracy"] = classifier.accuracy
    result["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    result["hardware"] = hardware()
    write_result(args.result, result)


if __name__ == "__main__":
    main()
