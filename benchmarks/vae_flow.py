"""Test NLL of a VAE with a Gaussian, an IAF and a planar-flow posterior on dynamically
binarized MNIST (the Burda et al. 2015 setting of benchmarks/vae_nll.py).

Architecture 784-200-200-50 with tanh units, Bernoulli decoder, Adam with a cosine-decayed
learning rate, trained on the 60k training set with a fresh binarization every epoch, and
evaluated on the 10k test set (binarized once, seed 0) with k=5000 importance samples. The
three models differ only in q(z | x): the encoder's diagonal Gaussian (Kingma & Welling
2014), that Gaussian through K inverse autoregressive flow steps conditioned on an extra
encoder output h (Kingma et al. 2016), or through K amortised planar flows (Rezende &
Mohamed 2015). All three train for the same number of epochs with the same schedule and
seed, one after another in one process. The bar: the IAF posterior beats the Gaussian by at
least 0.5 nats. ``--quick`` trains two epochs each and evaluates 500 test images with k=100,
to check the script and measure seconds per epoch (written to vae_flow_quick.json).

    python benchmarks/vae_flow.py --epochs 200 --backend numpyro
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, parse, quick_settings, write_result  # noqa: E402

from ppgen import runs  # noqa: E402
from ppgen.driver import read_metrics  # noqa: E402
from ppgen.recipes.base import BACKENDS  # noqa: E402

# Rezende & Mohamed 2015 (Table 2, DLGM + NF, K = 10 / 80) and Kingma et al. 2016 (Table 2,
# ResNet VAE, IAF) report MNIST NLLs in other architectures; the comparison here is within
# one architecture, Gaussian against flow at equal epochs.
MODELS = ("vae", "vae_iaf", "vae_planar")


def _gain(gaussian: float | None, flow: float | None) -> float | None:
    return None if gaussian is None or flow is None else gaussian - flow


PAPERS = {"planar_k10": 87.5, "planar_k80": 85.1, "diagonal_dlgm": 89.9}


def config(name: str, args: argparse.Namespace) -> runs.RunConfig:
    """The run of model ``name`` (``vae``, ``vae_iaf``, ``vae_planar``)."""
    flows = {
        "vae": {},
        "vae_iaf": dict(posterior_flow="iaf", flow_layers=args.iaf_layers),
        "vae_planar": dict(posterior_flow="planar", flow_layers=args.planar_layers),
    }[name]
    return runs.make_config(
        "vae",
        backend=args.backend,
        dataset="mnist",
        binarize="dynamic",
        objective="elbo",
        k=1,
        latent=50,
        hidden=(200, 200),
        activation="tanh",
        flow_hidden=tuple(args.flow_hidden),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        seed=args.seed,
        train_split="train_full",
        **flows,
    )


def train_and_eval(name: str, args: argparse.Namespace) -> dict:
    out = args.out / name
    if out.exists():
        shutil.rmtree(out)
    clock = Stopwatch()
    result = runs.train(config(name, args), out, progress=not args.quick)
    minutes = clock.minutes()
    metrics = read_metrics(out)
    run = runs.load_trained(out)
    ev = runs.evaluate(run, k=args.k, limit=args.eval_limit, progress=not args.quick)
    # the last epoch's training time (the first one also compiles, on NumPyro)
    per_epoch = metrics[-1]["train_seconds"]
    print(
        f"{name}: {len(result.history)} epochs in {minutes:.1f} min ({per_epoch:.1f} s/epoch), "
        f"test NLL {ev['test_nll']:.2f} (k={args.k}), ELBO {ev['test_elbo']:.2f}",
        flush=True,
    )
    return {
        "epochs": len(result.history),
        "train_minutes": minutes,
        "seconds_per_epoch": per_epoch,
        "eval_minutes": ev["seconds"] / 60,
        **ev,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=BACKENDS, default="numpyro")
    p.add_argument("--epochs", type=int, default=100, help="epochs of every model")
    p.add_argument("--k", type=int, default=5000, help="importance samples for test NLL")
    p.add_argument("--eval-limit", type=int, default=None, help="first N test examples only")
    p.add_argument("--iaf-layers", type=int, default=2, help="IAF steps")
    p.add_argument("--planar-layers", type=int, default=10, help="planar flow layers")
    p.add_argument(
        "--flow-hidden", type=int, nargs="+", default=[200, 200], help="conditioner widths"
    )
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench_vae_flow"))
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 epochs, 500 test images, k=100: check the script, measure s/epoch",
    )
    p.add_argument(
        "--models",
        default="vae,vae_iaf,vae_planar",
        help="comma-separated subset of vae, vae_iaf, vae_planar (a key is null when left out)",
    )
    args = parse(p)
    models = args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.quick:  # and a scratch run directory
        quick_settings(p, args, {"epochs": 2, "k": 100, "eval_limit": 500}, ("out",))

    clock = Stopwatch()
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.out = Path(scratch)
        results = {name: train_and_eval(name, args) for name in models}

    nll = {name: results[name]["test_nll"] if name in results else None for name in MODELS}
    write_result(
        "vae_flow_quick" if args.quick else "vae_flow",
        {
            "vae_nll": nll["vae"],
            "vae_iaf_nll": nll["vae_iaf"],
            "vae_planar_nll": nll["vae_planar"],
            "epochs": args.epochs,
            "iaf_gain": _gain(nll["vae"], nll["vae_iaf"]),
            "planar_gain": _gain(nll["vae"], nll["vae_planar"]),
            "seconds_per_epoch": {name: r["seconds_per_epoch"] for name, r in results.items()},
            "minutes": clock.minutes(),
            "runs": results,
            "papers_other_architectures": PAPERS,
            "setting": "784-200-200-50 tanh, dynamic binarization, 60k train, batch "
            f"{args.batch_size}, Adam {args.lr} cosine, {args.epochs} epochs, ELBO (k=1, "
            f"Monte Carlo KL); IAF {args.iaf_layers} steps, planar {args.planar_layers} "
            f"layers, conditioners {args.flow_hidden}, context h = 200; {args.backend} "
            f"backend; test NLL with k={args.k}"
            + (f" on the first {args.eval_limit} test images" if args.eval_limit else ""),
            "quick": args.quick,
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
