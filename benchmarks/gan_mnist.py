"""FID and KID of MNIST generators fitted by each learning principle, under one protocol: the
non-saturating GAN, WGAN-GP, hinge, MMD and Sinkhorn generators of ``ppgen train gan|mmd|
sinkhorn`` (DCGAN generator and critic), and the foundation's VAE (``ppgen train vae``).

Protocol: each model trains through ``ppgen.runs`` (the command line's code) for at most
``--minutes`` of this machine (the driver stops after the epoch in which the budget runs
out), the checkpoint kept being the best validation epoch (FID on 2,000 validation samples
for the generators, the ELBO for the VAE); then 10,000 samples are scored against MNIST's
10,000 test images with ppgen's dataset classifier (``ppgen.classifier``: its penultimate
features for FID and KID, its predictions for the classes covered and the inception-score
analogue). The VAE's samples are its decoder's pixel means ``p(x = 1 | z)``, ``z ~ p(z)``
(grey images, as the test images are). ``--seeds`` seeds for the best adversarial model.

    python benchmarks/gan_mnist.py                     # 30 minutes a model, 3 seeds
    python benchmarks/gan_mnist.py --minutes 5 --seeds 1
    python benchmarks/gan_mnist.py --architecture mlp --hidden 512 512   # MLP networks

The classifier is read from (or trained into) ``$PPGEN_DATA/classifiers``.

Two processes, one core each, can share the protocol: each runs some models (or some seeds,
``--first-seed``) into its own ``--result``, and ``--combine`` joins their rows:

    python benchmarks/gan_mnist.py --models wgan-gp mmd --seeds 1 --threads 1 --result part_a
    python benchmarks/gan_mnist.py --models hinge --seeds 2 --first-seed 1 --threads 1 \
        --result part_b
    python benchmarks/gan_mnist.py --combine part_a part_b        # -> gan_mnist.json
    python benchmarks/gan_mnist.py --combine part_a earlier:vae   # only earlier's VAE rows

JSON keys: ``fid_<name>``, ``kid_<name>`` (best adversarial model: mean over seeds),
``classifier_accuracy``, ``minutes`` (the whole run), ``models`` (every run's figures and
settings).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, hardware, limit_threads, parse, result_name, write_result  # noqa: E402

from ppgen.config import LR_SCHEDULES  # noqa: E402

#: name -> (recipe, options, learning rate)
MODELS = {
    "nonsaturating": ("gan", {"loss": "nonsaturating"}, 2e-4),
    "wgan-gp": ("gan", {"loss": "wgan-gp", "n_critic": 5}, 1e-4),
    "hinge": ("gan", {"loss": "hinge"}, 2e-4),
    "mmd": ("mmd", {}, 1e-3),
    "sinkhorn": ("sinkhorn", {}, 1e-3),
    "vae": ("vae", {}, 1e-3),
}
ADVERSARIAL = ("nonsaturating", "wgan-gp", "hinge")


def run_config(name: str, seed: int, args) -> tuple:
    """``(RunConfig, options given, recipe)`` of model ``name`` under the flags ``args``; the
    recipe's own checks refuse a bad option (``ConfigError``)."""
    from ppgen.config import RunConfig
    from ppgen.recipes.registry import get_recipe

    recipe_name, options, lr = MODELS[name]
    recipe = get_recipe(recipe_name)
    if recipe_name != "vae" and args.architecture != "dcgan":  # the generators' networks
        options = {**options, "architecture": args.architecture, "hidden": tuple(args.hidden)}
    elif recipe_name != "vae" and args.channels:
        options = {**options, "channels": tuple(args.channels)}
    if name in ADVERSARIAL and args.ema:
        options = {**options, "ema": args.ema}
    if name in ADVERSARIAL and args.lr:
        lr = args.lr
    if name in ADVERSARIAL and args.lr_critic:
        options = {**options, "lr_critic": args.lr_critic}
    if name in ADVERSARIAL and args.betas:
        options = {**options, "beta1": args.betas[0], "beta2": args.betas[1]}
    schedule = {}  # the GANs' learning-rate schedule, over --epochs
    if name in ADVERSARIAL and args.lr_schedule != "constant":
        schedule = {"lr_schedule": args.lr_schedule, "epochs": args.epochs}
    config = RunConfig(
        model=recipe_name, backend=args.backend, dataset="mnist",
        epochs=args.epochs if name in ADVERSARIAL else 1000, batch_size=64, lr=lr, seed=seed,
        lr_schedule=schedule.get("lr_schedule", "constant"), options=recipe.options(**options),
    )  # fmt: skip
    options = {**options, **schedule}  # recorded in the row's settings
    return config, options, recipe


def run_model(name: str, seed: int, args, out: Path, classifier) -> dict:
    from ppgen import plots, runs
    from ppgen.classifier import image_sample_metrics
    from ppgen.data import load_dataset

    config, options, recipe = run_config(name, seed, args)
    t0 = time.perf_counter()
    runs.train(config, out, progress=False, time_limit=60 * args.minutes)
    minutes = (time.perf_counter() - t0) / 60
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    run = runs.load_trained(out)  # the best validation epoch's checkpoint
    samples = recipe.sample(run, 10_000, seed=seed)
    test = load_dataset("mnist", "test").x
    figures = image_sample_metrics(samples, test, classifier)
    if seed == 0:
        # another --result keeps its own pictures: gan_mnist_c64 -> <name>_c64.png
        suffix = args.result.removeprefix("gan_mnist").lstrip("_")
        path = RESULTS / "gan_mnist" / (f"{name}_{suffix}.png" if suffix else f"{name}.png")
        if path.exists():
            path.unlink()  # ours: a rerun replaces the picture it wrote
        plots.save_image_grid(samples[:64], path, (28, 28))
    return {"name": name, "seed": seed, "epochs_trained": len(epochs),  # in the budget
            "epoch_kept": run.epoch + 1, "train_minutes": minutes,
            # each epoch's validation figure: FID on 2,000 samples (the VAE: its loss)
            "valid_by_epoch": [round(e["valid_loss"], 2) if "valid_loss" in e else None
                               for e in epochs],
            "settings": {"lr": config.lr, **{k: v for k, v in options.items()
                                      if not isinstance(v, tuple)},
                         **{k: list(v) for k, v in options.items() if isinstance(v, tuple)}},
            **{k: figures[k] for k in ("fid", "kid", "kid_std", "classes", "kl_to_uniform",
                                       "inception_score")}}  # fmt: skip


def save_fid_curves(rows: list[dict], result: str) -> Path | None:
    """``gan_mnist/<result>_valid_fid.png``: each generator row's validation FID by epoch
    (rows run before ``valid_by_epoch`` was recorded, rows with no finite figure, and the
    VAE's loss are left out; ``None`` and no picture when none is left)."""
    from ppgen import plots

    path = RESULTS / "gan_mnist" / f"{result}_valid_fid.png"
    if path.exists():
        path.unlink()  # ours: a rerun replaces (or, with no curve, removes) the picture it wrote
    curves = {f"{r['name']} seed {r['seed']}": r["valid_by_epoch"] for r in rows
              if r["name"] != "vae" and any(v is not None and math.isfinite(v)
                                             for v in r.get("valid_by_epoch") or [])}  # fmt: skip
    if not curves:
        return None
    return plots.save_curve_comparison(curves, path, "validation FID (2,000 samples)", log_y=True)


def best_adversarial(rows: list[dict]) -> str | None:
    """The adversarial model with the lowest FID at its first seed (``None``: no GAN)."""
    first = {}
    for r in sorted((r for r in rows if r["name"] in ADVERSARIAL), key=lambda r: r["seed"]):
        first.setdefault(r["name"], r)
    return min(first.values(), key=lambda r: r["fid"])["name"] if first else None


def summarise(rows: list[dict]) -> dict:
    """The JSON keys of a table of runs: the best adversarial model (:func:`best_adversarial`),
    each model's mean FID and KID over its seeds, the best GAN's FID over the VAE's."""
    best = best_adversarial(rows)
    result: dict = {"models": rows, "best_adversarial": best}
    for name in {r["name"] for r in rows}:
        mine = [r for r in rows if r["name"] == name]
        result[f"fid_{name}"] = statistics.mean(r["fid"] for r in mine)
        result[f"kid_{name}"] = statistics.mean(r["kid"] for r in mine)
    if best and "fid_vae" in result:
        result["best_gan_fid_vs_vae"] = result[f"fid_{best}"] / result["fid_vae"]
    return result


def combine_part(text: str) -> tuple[str, list[str] | None]:
    """``--combine``'s type: ``RESULT`` (all its rows) or ``RESULT:model,model`` (those)."""
    name, _, models = text.partition(":")
    chosen = [m for m in models.split(",") if m] if models else None
    unknown = sorted(set(chosen or ()) - set(MODELS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown} in {text!r}")
    return result_name(name), chosen


def is_result(part: object) -> bool:
    """Whether ``part`` (a parsed JSON file) is this script's result: a classifier accuracy
    and a list of rows, each with a known model, an integer seed and numeric figures."""

    def is_row(row: object) -> bool:
        return (
            isinstance(row, dict)
            and row.get("name") in MODELS
            and type(row.get("seed")) is int
            and all(
                isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool)
                for k in ("fid", "kid", "train_minutes")
            )
        )

    return (
        isinstance(part, dict)
        and isinstance(part.get("classifier_accuracy"), int | float)
        and isinstance(part.get("models"), list)
        and all(is_row(r) for r in part["models"])
    )


def combine(parts: list[tuple[str, list[str] | None]], into: str) -> None:
    """Join the rows of the results ``parts`` (runs of this script, e.g. one per core; each
    ``(name, models or None for all)``) into ``into``; a row without its own ``settings``
    takes its file's; ``minutes`` is then the rows' training minutes. Stops on a model and
    seed found twice, or a file that is missing or not this script's."""
    rows, accuracy, hardware_of = [], None, None
    for name, models in parts:
        path = RESULTS / f"{name}.json"
        try:
            part = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(
                f"--combine: cannot read {path} ({err}); run that part first"
            ) from None
        if not is_result(part):
            raise SystemExit(f"--combine: {path} is not a gan_mnist.py result")
        chosen = [r for r in part["models"] if models is None or r["name"] in models]
        if not chosen:
            raise SystemExit(f"--combine: {path} has no rows of {', '.join(models or ['any'])}")
        for row in chosen:
            row = dict(row)
            row.setdefault(
                "settings", {k: part.get(k) for k in ("channels", "ema", "architecture", "hidden")}
            )
            row.setdefault("from", name)  # a part that was itself joined keeps its sources
            if any((r["name"], r["seed"]) == (row["name"], row["seed"]) for r in rows):
                raise SystemExit(f"--combine: {row['name']} seed {row['seed']} is in two parts")
            rows.append(row)
        accuracy = part["classifier_accuracy"] if accuracy is None else accuracy
        hardware_of = hardware_of or part.get("hardware")
    result = summarise(rows)
    result.update(combined_from=[f"{n}:{','.join(m)}" if m else n for n, m in parts],
                  minutes=round(sum(r["train_minutes"] for r in rows), 2),
                  classifier_accuracy=accuracy, hardware=hardware_of)  # fmt: skip
    write_result(into, result)  # the table first: a picture that fails loses no result
    save_fid_curves(rows, into)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget a model")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the best GAN")
    parser.add_argument("--backend", default="numpyro", choices=("pyro", "numpyro"))
    parser.add_argument("--architecture", default="dcgan", choices=("dcgan", "mlp"),
                        help="the generators' (and critics') networks")  # fmt: skip
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512],
                        help="--architecture mlp: hidden widths")  # fmt: skip
    parser.add_argument("--channels", type=int, nargs=2, default=None,
                        help="dcgan: the generator's channels on the 7x7 and 14x14 maps (the "
                        "critic's first conv has the second); default 128 64")  # fmt: skip
    parser.add_argument("--ema", type=float, default=0.0,
                        help="the GANs' generator moving average (the recipes' --ema; 0: "
                        "none)")  # fmt: skip
    parser.add_argument("--lr", type=float, default=0.0,
                        help="the GANs' learning rate (0: each loss's own, above)")  # fmt: skip
    parser.add_argument("--lr-critic", type=float, default=0.0,
                        help="the GANs' critic learning rate (0: --lr; two time-scale "
                        "updates, Heusel et al. 2017, when higher)")  # fmt: skip
    parser.add_argument("--betas", type=float, nargs=2, default=None, metavar=("B1", "B2"),
                        help="the GANs' Adam betas (default: the recipe's 0.5 0.9; 0 0.9 is "
                        "SNGAN's and SAGAN's)")  # fmt: skip
    parser.add_argument("--lr-schedule", default="constant", choices=LR_SCHEDULES,
                        help="the GANs' learning-rate schedule, over --epochs (cosine: to 0 "
                        "at the last epoch)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=1000,
                        help="the GANs' epochs at most, and the length of --lr-schedule; the "
                        "--minutes budget stops training first if it runs out (default "
                        "1000: the budget decides)")  # fmt: skip
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of the first run; the best GAN's further seeds follow it",
    )
    parser.add_argument("--combine", nargs="+", metavar="RESULT[:MODELS]", type=combine_part,
                        help="train nothing: join these results' rows (or only those of "
                        "the models named after a colon) into --result, with a picture of the "
                        "rows' validation FID (the sample grids stay under each part's "
                        "name)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--result", type=result_name, default="gan_mnist")
    args = parse(parser)
    if args.combine:
        ignored = [f"--{k.replace('_', '-')}" for k, v in vars(args).items()
                   if k not in ("combine", "result") and v != parser.get_default(k)]  # fmt: skip
        if ignored:
            parser.error(f"--combine trains nothing: drop {', '.join(ignored)}")
        return combine(args.combine, args.result)
    if not all(math.isfinite(v) and v >= 0 for v in (args.lr, args.lr_critic)):
        parser.error("--lr and --lr-critic must be finite and >= 0 (0: the defaults)")
    if not (math.isfinite(args.minutes) and args.minutes > 0):
        parser.error(f"--minutes must be a positive number, got {args.minutes}")
    if args.seeds < 1 or args.first_seed < 0:
        parser.error("--seeds must be >= 1 and --first-seed >= 0")
    from ppgen.errors import ConfigError

    for name in dict.fromkeys([*args.models, "hinge"]):  # hinge: every GAN flag, even unused
        try:  # the recipes' own checks, before anything trains
            run_config(name, args.first_seed, args)
        except ConfigError as err:
            parser.error(f"{name}: {err}")
    limit_threads(args.threads)
    from ppgen.classifier import load_classifier

    classifier = load_classifier()
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        first = args.first_seed
        for name in args.models:
            rows.append(run_model(name, first, args, Path(tmp) / f"{name}_{first}", classifier))
            print(rows[-1], flush=True)
        best = best_adversarial(rows)
        for seed in range(first + 1, first + args.seeds if best else 0):
            rows.append(run_model(best, seed, args, Path(tmp) / f"{best}_{seed}", classifier))
            print(rows[-1], flush=True)
    result = summarise(rows)
    result.update(minutes_per_model=args.minutes, backend=args.backend,
                  architecture=args.architecture,
                  hidden=args.hidden if args.architecture == "mlp" else None,
                  channels=args.channels, ema=args.ema, betas=args.betas,
                  lr_schedule=args.lr_schedule, epochs=args.epochs)  # fmt: skip
    result["classifier_accuracy"] = classifier.accuracy
    result["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    result["hardware"] = hardware()
    write_result(args.result, result)
    save_fid_curves(rows, args.result)


if __name__ == "__main__":
    main()
