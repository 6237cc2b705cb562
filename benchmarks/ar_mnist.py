"""Binarized MNIST test NLL (nats per image) of FVSBN, NADE, MADE and Gated PixelCNN, each
within a wall-clock budget, trained and evaluated through ppgen's autoregressive recipes.

Every model is what ``ppgen train {fvsbn,nade,made,pixelcnn} --dataset mnist`` builds, fitted
by exact maximum likelihood (the ELBO of a model without latent sites) with Adam and a cosine-
decayed learning rate, batch 100. Data: the recipes' default ``--binarize static`` (NADE,
MADE, PixelCNN): the grey MNIST training images binarized once by one Bernoulli draw with the run's
seed (``--seed``), the last 10,000 held out for validation (``train_split="train"``: 50,000 to
train, as Larochelle & Murray and Germain et al. did); FVSBN trains with ``--binarize
dynamic`` (a fresh Bernoulli draw of the grey training images every step, pytorch-generative's
setting), because it overfits one static draw. Validation and test images are binarized once
with seed 0 for every model: the test set is the same. The static draw is static binarization
in the papers' spirit but not Larochelle & Murray's file (ppgen does not ship it), so the
figures are near, not equal to, the papers' setting; a draw of grey MNIST is a little harder to
model than that file (the reimplementations that use dynamic binarization report figures about
1 nat apart). The checkpoint kept (``BEST``) is the epoch of the best validation NLL, the
papers' early stopping.
The figure is the exact test NLL ``-log p(x)`` in nats, mean over the 10,000 test images.

Models (the recipes' options in ``SETTINGS``): FVSBN (one logistic regression per pixel on the
pixels before it); NADE (Larochelle & Murray 2011) with 500 hidden units; MADE (Germain et al.
2015) with one hidden layer of 4000, direct input-to-output connections (the recipe's default
``--direct output``: the outputs also read the earlier pixels through masked weights, the
setting of the paper's MNIST figures, whose code calls it ``direct_input_connect="Output"``;
runs before 2026-12-02 had none) and 32 mask sets, trained connectivity-agnostically
(``--agnostic connectivity``: a mask set per minibatch, the raster order kept, each set with
its own hidden connectivity) on dynamically binarized training images (a fresh draw every
step; on one static draw the 32 sets overfit) with Adam 1e-3, and scored by the ensemble
``log (1/32) sum_k p_k(x)`` (``made_ensemble_nll``; ``made_ensemble_one_set_nll`` is the same
network's exact NLL under each mask set, averaged over the 32 sets: what one set drawn at
random scores; the settings before 2026-12-02, 2 x 500 order-agnostic on static data at
Adam 5e-3, are ``--made-hidden 500,500 --made-agnostic order --made-binarize static
--made-lr 5e-3``); MADE with one mask set (``made1``: 2 x 500, the raster order, trained
alone, Adam 1e-3, at most 150 epochs;
``made_nll``, the paper's 89.59 baseline); Gated PixelCNN (van den Oord et al. 2016b, vertical
and horizontal stacks, no blind spot) with 32 channels and 7 gated layers, Bernoulli pixels,
Adam 1e-2 (a check of four rates; the recipe's own default stays 1e-3, since the rate was
measured only for this network on binarized pixels).

Budgets: 30 minutes each for the dense models, 60 for Gated PixelCNN. A timed probe (a few
training steps after a compile, and a slice of the validation set) gives the seconds per
epoch; the number of epochs is set so that the cosine schedule ends within 90% of the
budget (the probe leaves out checkpoints and compiles), at most ``MAX_EPOCHS`` (FVSBN: 150)
and ``--max-epochs``,
and the driver's time limit stops training after the epoch in which the budget runs out.
``--backend auto`` (default) probes both backends on each model and trains on the faster
(the probe's seconds per step are in the JSON); ``pyro`` or ``numpyro`` fixes one. On NumPyro
the recipe trains the convolutional PixelCNN with the trainer's ``epoch_loop="steps"`` (a
Python loop of jitted steps: XLA on CPU runs convolutions ~15x slower inside one epoch-long
``lax.scan``); the dense models run an epoch as one ``lax.scan``.

Papers (static binarized MNIST, nats): FVSBN 97.45 and NADE 88.86 (Larochelle & Murray 2011;
Uria et al. 2016), MADE 2 hidden layers, 32 masks 86.64 (Germain et al. 2015, table 6;
their code's command for it uses two hidden layers of 8,000 units and Adagrad to
convergence, far beyond a CPU half-hour),
PixelCNN 81.30 (van den Oord et al. 2016a; Gated PixelCNN about the same).

    python benchmarks/ar_mnist.py                      # all five, 4 x 30 + 60 minutes
    python benchmarks/ar_mnist.py --models made --minutes-dense 30 --threads 1
    python benchmarks/ar_mnist.py --minutes-dense 1 --minutes-pixelcnn 2 --eval-limit 200 \
        --train-limit 2000 --probe-steps 5          # minutes: checks the script
    python benchmarks/ar_mnist.py --models pixelcnn --backend numpyro --minutes-pixelcnn 6 \
        --pixelcnn-channels 64 --pixelcnn-layers 10 --result ar_mnist_gpu   # on a GPU
    python benchmarks/ar_mnist.py --models pixelcnn --backend pyro --train-limit 10000 \
        --max-epochs 2 --pixelcnn-lr 3e-3 --result ar_mnist_pixelcnn_lr3e-3  # a rate check

Each run directory (``--out``/<model>) keeps the trained run (``ppgen eval``/``ppgen sample``
work on it) and the recipes' pictures: ``samples.png`` (64 samples), ``completions.png`` (the
bottom half of 8 test images drawn given the top half; raster-order models),
``receptive_field.png`` and ``curves.png``.

JSON keys (``benchmarks/results/ar_mnist.json``): ``fvsbn_nll``, ``nade_nll``, ``made_nll``
(``made1``: one mask set, trained alone), ``made_ensemble_nll`` (32 mask sets),
``made_ensemble_one_set_nll``, ``pixelcnn_nll`` (Gated PixelCNN;
``null`` for a model left out), ``minutes`` (the whole script), ``minutes_per_model`` (each
model's training), ``epochs`` (each model's epochs trained), ``backend`` (each model's),
``paper_nll``, ``probe_seconds_per_step`` (each backend probed), ``pictures``, ``runs``
(every figure ``ppgen eval`` reports), ``setting``, ``hardware``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    RESULTS,
    Stopwatch,
    add_threads_flag,
    check_run_dirs,
    comma_names,
    hardware,
    limit_threads,
    parse,
    planned_epochs,
    result_name,
    train_fresh,
    write_result,
)

from ppgen.models.masks import AGNOSTIC  # noqa: E402
from ppgen.recipes.base import layer_sizes, positive, positive_int, seed_int  # noqa: E402

NAME = "ar_mnist"
MODELS = ("fvsbn", "nade", "made1", "made", "pixelcnn")
RECIPE = {"made1": "made"}  # the recipe of each model not named after its own
PAPER = {"fvsbn": 97.45, "nade": 88.86, "made1": 89.59, "made": 86.64, "pixelcnn": 81.30}
SETTINGS = {  # the recipes' options of each model (binarize: "static" unless given)
    # FVSBN overfits one static draw of the training images (first run: its best validation
    # epoch was 35 of 735); fresh draws every step (dynamic binarization) do not.
    "fvsbn": {"binarize": "dynamic"},
    "nade": {"hidden": 500},
    # MADE: direct input-to-output connections (the recipe's default since 2026-12-02).
    "made1": {"hidden": (500, 500), "masks": 1, "direct": "output"},  # one set: raster order
    # The 32-set MADE: one wide layer, dynamic data (see the module docstring and RESULTS).
    "made": {
        "hidden": (4000,),
        "masks": 32,
        "agnostic": "connectivity",
        "direct": "output",
        "binarize": "dynamic",
    },
    "pixelcnn": {"variant": "gated", "channels": 32, "layers": 7},
}
# Shared run settings, per model (the learning rate is DEFAULT_LR unless set here; --lr sets
# every model's, --made-lr and --pixelcnn-lr one model's). NADE: 16
# epochs fit the budget, and at 1e-3 it was still improving at the last. MADE: its own entry
# so that --made-lr can override it (5e-3, the rate of the earlier order-agnostic sets, was
# worse than 1e-3 for connectivity-agnostic sets: 96.62 against 93.52).
# Gated PixelCNN: 1e-2, from a check of 1e-3, 3e-3, 1e-2 and 2e-2 over 200 steps (validation
# 107.3, 103.8, 99.1, 102.2 nats; docs/RESULTS.md); --pixelcnn-lr overrides it.
DEFAULT_LR = 1e-3
RUN_SETTINGS: dict[str, dict] = {
    "made": {"lr": 1e-3},
    "nade": {"lr": 3e-3},
    "pixelcnn": {"lr": 1e-2},
}
# FVSBN's validation NLL stops improving well before 735 epochs; one MADE mask set overfits the
# static draw as FVSBN does: a schedule that decays within 150 epochs.
MAX_EPOCHS = {"fvsbn": 150, "made1": 150}
BACKENDS = ("pyro", "numpyro")
BATCH = 100
PLAN = 0.9  # the share of a budget the epochs are planned for: the probe leaves out the
# checkpoints and the first epoch's compile, and the schedule should end within the budget


# Flags that override one setting of one model: (model, option, argparse keywords, help);
# the flag is --MODEL-OPTION.
OVERRIDES = (
    ("pixelcnn", "channels", {"type": positive_int}, "Gated PixelCNN channels"),
    ("pixelcnn", "layers", {"type": positive_int}, "Gated PixelCNN layers"),
    ("made", "agnostic", {"choices": AGNOSTIC}, "what the 32-set MADE's mask sets draw"),
    ("pixelcnn", "lr", {"type": positive(float)}, "Gated PixelCNN's learning rate"),
    ("made", "lr", {"type": positive(float)}, "the 32-set MADE's learning rate"),
    ("made", "hidden", {"type": layer_sizes}, "the 32-set MADE's hidden widths, e.g. 500"),
    ("made", "binarize", {"choices": ("static", "dynamic")}, "the 32-set MADE's training data"),
)


def _overridden(model: str, table: dict, args: argparse.Namespace) -> dict:
    """``table[model]`` with the ``OVERRIDES`` flags given on the command line applied."""
    chosen = dict(table.get(model, {}))
    for owner, option, _, _ in OVERRIDES:
        value = getattr(args, f"{owner}_{option}")
        if owner == model and option in chosen and value is not None:
            chosen[option] = value
    return chosen


def settings(model: str, args: argparse.Namespace) -> dict:
    """The recipe options of ``model``: ``SETTINGS`` with the ``OVERRIDES`` flags applied
    (all but the learning rates)."""
    return _overridden(model, SETTINGS, args)


def run_settings(model: str, args: argparse.Namespace) -> dict:
    """``RUN_SETTINGS`` of ``model`` (its rate ``DEFAULT_LR`` where it sets none) with
    ``--lr`` (every model's rate) and then the ``OVERRIDES`` flags (``--made-lr``,
    ``--pixelcnn-lr``) applied."""
    chosen = {"lr": DEFAULT_LR, **RUN_SETTINGS.get(model, {})}
    if args.lr is not None:
        chosen["lr"] = args.lr
    return _overridden(model, {model: chosen}, args)


def config(model: str, backend_name: str, epochs: int, args: argparse.Namespace):
    """The run of ``model`` (``ppgen train MODEL`` with these flags)."""
    from ppgen import runs

    return runs.make_config(
        RECIPE.get(model, model),
        backend=backend_name,
        dataset="mnist",
        epochs=epochs,
        batch_size=BATCH,
        lr_schedule="cosine",
        seed=args.seed,
        train_split="train",
        **run_settings(model, args),
        **{"binarize": "static", **settings(model, args)},
    )


def cap(model: str, args: argparse.Namespace) -> int | None:
    """The most epochs ``model`` is planned for: ``MAX_EPOCHS`` and ``--max-epochs``, the
    smaller (``None``: no cap)."""
    caps = [c for c in (MAX_EPOCHS.get(model), args.max_epochs) if c is not None]
    return min(caps) if caps else None


def limit_training(limit: int | None) -> None:
    """Train (and probe) on the first ``limit`` training images only: a check of the script
    that ends in minutes. It wraps the registered recipes' ``prepare`` in this process (the
    recipes have no such option; their validation and test sets are left whole)."""
    if limit is None:
        return
    from ppgen.recipes import get_recipe

    for name in {RECIPE.get(m, m) for m in MODELS}:
        recipe = get_recipe(name)
        prepare = recipe.prepare

        def limited(config, prepare=prepare):
            data = prepare(config)
            return dataclasses.replace(data, train=data.train[:limit], num_data=limit)

        recipe.prepare = limited


def probe(model: str, backend_name: str, args: argparse.Namespace) -> dict:
    """Seconds per training step (``args.probe_steps`` steps timed after a first pass that
    compiles) and per validation image, through the recipe's own trainer."""
    from ppgen.recipes import backend

    cfg = config(model, backend_name, 1, args)
    data = cfg.recipe.prepare(cfg)
    trainer = cfg.recipe.build(cfg, data, backend(backend_name)).trainer
    rows = data.train[: args.probe_steps * BATCH]
    state = trainer.init(cfg.seed, data.train)
    state, _ = trainer.train_epoch(state, rows, 0)
    t0 = time.perf_counter()
    state, _ = trainer.train_epoch(state, rows, 1)
    per_step = (time.perf_counter() - t0) / args.probe_steps
    valid = data.valid[:1000]
    trainer.evaluate(state, valid)
    t0 = time.perf_counter()
    trainer.evaluate(state, valid)
    per_valid = (time.perf_counter() - t0) / len(valid)
    epoch = per_step * (data.num_data // BATCH) + per_valid * len(data.valid)
    return {"step": per_step, "valid_image": per_valid, "epoch": epoch}


def train_and_eval(model: str, backend_name: str, epochs: int, minutes: float, args) -> dict:
    from ppgen import runs

    out = args.out / model
    result, run, train_minutes = train_fresh(
        config(model, backend_name, epochs, args), out, time_limit=minutes * 60
    )
    ev = runs.evaluate(run, limit=args.eval_limit, progress=False)
    print(
        f"{model} ({backend_name}): {len(result.history)} of {epochs} epochs in "
        f"{train_minutes:.1f} min, test NLL {ev['test_nll']:.2f} nats "
        f"(paper {PAPER[model]})",
        flush=True,
    )
    pictures = [str(p) for p in runs.save_pictures(run)]
    print(f"{model}: pictures in {out}", flush=True)
    return {
        "backend": backend_name,
        "epoch_loop": run.recipe.epoch_loop(run.config) if backend_name == "numpyro" else None,
        "epochs": len(result.history),
        "epochs_planned": epochs,
        "best_epoch": run.epoch + 1,
        "budget_minutes": minutes,
        "train_minutes": train_minutes,
        "eval_minutes": ev["seconds"] / 60,
        "pictures": pictures,
        **ev,
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated subset of " + ", ".join(MODELS))  # fmt: skip
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                   help="auto: probe both on each model, train on the faster")  # fmt: skip
    p.add_argument("--minutes-dense", type=positive(float), default=30.0,
                   help="training budget of FVSBN, NADE and MADE each")  # fmt: skip
    p.add_argument("--minutes-pixelcnn", type=positive(float), default=60.0,
                   help="training budget of Gated PixelCNN")  # fmt: skip
    add_threads_flag(p)
    p.add_argument("--eval-limit", type=positive_int, default=None,
                   help="first N test images only")  # fmt: skip
    p.add_argument("--train-limit", type=positive_int, default=None,
                   help="train on the first N training images (checks the script)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--lr", type=positive(float), default=None,
                   help="Adam's peak rate of every model (default: each model's own, "
                   + ", ".join(f"{m} {s['lr']:g}" for m, s in RUN_SETTINGS.items())
                   + f", else {DEFAULT_LR:g}); --made-lr and --pixelcnn-lr set one "
                   "model's")  # fmt: skip
    p.add_argument("--max-epochs", type=positive_int, default=None,
                   help="plan at most N epochs for every model (a learning-rate check; "
                   "default: as many as fit each budget, within MAX_EPOCHS)")  # fmt: skip
    p.add_argument("--probe-steps", type=positive_int, default=20,
                   help="steps of each timed probe")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/bench_ar_mnist"),
                   help="folder of the run directories, one per model (an earlier "
                   "benchmark run there is replaced; a directory holding anything else is "
                   "refused)")  # fmt: skip
    for owner, option, kwargs, text in OVERRIDES:
        default = {**SETTINGS[owner], **RUN_SETTINGS.get(owner, {})}[option]
        p.add_argument(f"--{owner}-{option}", default=None, help=f"{text} (default {default})",
                       **kwargs)  # fmt: skip
    p.add_argument("--result", type=result_name, default=NAME,
                   help="name of the JSON written to benchmarks/results/ (a GPU run: "
                   "ar_mnist_gpu, to keep the CPU figures)")  # fmt: skip
    p.add_argument("--merge", action="store_true",
                   help="keep the other models' entries of ar_mnist.json (two processes, "
                   "one core each, each running some of the models)")  # fmt: skip
    return p


def main() -> None:
    p = build_parser()
    args = parse(p)
    models = comma_names(p, "--models", args.models, MODELS, "model")
    for owner, option, _, _ in OVERRIDES:
        if getattr(args, f"{owner}_{option}") is not None and owner not in models:
            p.error(f"--{owner}-{option} sets model {owner}, which --models leaves out")
    if args.train_limit is not None and not BATCH <= args.train_limit:
        p.error(f"--train-limit must be at least the batch ({BATCH})")
    limit_threads(args.threads)  # before anything imports jax
    check_run_dirs(*(args.out / m for m in models))  # before any probe or training
    limit_training(args.train_limit)

    clock = Stopwatch()
    budget = {m: args.minutes_pixelcnn if m == "pixelcnn" else args.minutes_dense for m in models}
    speed, chosen, results = {}, {}, {}
    for model in models:
        tried = BACKENDS if args.backend == "auto" else (args.backend,)
        speed[model] = {b: probe(model, b, args) for b in tried}
        chosen[model] = min(tried, key=lambda b: speed[model][b]["epoch"])
        seconds = speed[model][chosen[model]]["epoch"]
        epochs = planned_epochs(seconds, PLAN * budget[model], cap(model, args))
        steps = ", ".join(f"{b} {s['step'] * 1e3:.1f} ms/step" for b, s in speed[model].items())
        print(f"{model}: {steps} -> {chosen[model]}, {seconds:.0f} s/epoch, {epochs} epochs",
              flush=True)  # fmt: skip
        if seconds > budget[model] * 60:
            print(f"{model}: one epoch takes longer than its {budget[model]:g}-minute budget; "
                  "training runs that one epoch", flush=True)  # fmt: skip
        results[model] = train_and_eval(model, chosen[model], epochs, budget[model], args)

    previous = previous_runs(args, results)
    results = {**previous["runs"], **results}

    def figure(model: str, key: str = "test_nll") -> float | None:
        return results[model].get(key) if model in results else None

    result = dict(
        {
            "fvsbn_nll": figure("fvsbn"),
            "nade_nll": figure("nade"),
            "made_nll": figure("made1"),
            "made_ensemble_one_set_nll": figure("made", "test_nll_one_mask"),
            "made_ensemble_nll": figure("made"),
            "pixelcnn_nll": figure("pixelcnn"),
            "minutes": clock.minutes(),
            "minutes_per_model": {m: r["train_minutes"] for m, r in results.items()},
            "epochs": {m: r["epochs"] for m, r in results.items()},
            "backend": chosen,
            "budget_minutes": budget,
            "paper_nll": PAPER,
            "probe_seconds_per_step": {
                m: {b: s["step"] for b, s in v.items()} for m, v in speed.items()
            },
            "probe_seconds_per_epoch": {
                m: {b: s["epoch"] for b, s in v.items()} for m, v in speed.items()
            },
            "pictures": {m: r["pictures"] for m, r in results.items()},
            "settings": {m: {**run_settings(m, args), **settings(m, args)} for m in models},
            "max_epochs": {m: cap(m, args) for m in models if cap(m, args) is not None},
            "runs": results,
            "setting": "MNIST binarized: training images statically (one Bernoulli draw, seed "
            f"{args.seed}) or dynamically (a draw every step) as settings[model]['binarize'] "
            "says (static where absent); validation and test statically, seed 0; 50k train / 10k "
            f"validation (best epoch kept), batch {BATCH}, Adam at settings[model]['lr'] ("
            f"{DEFAULT_LR} where absent) cosine over the planned epochs, exact test NLL in nats"
            + (f" on the first {args.eval_limit} test images" if args.eval_limit else "")
            + (f"; trained on the first {args.train_limit} images" if args.train_limit else ""),
            "threads": args.threads,
            "hardware": hardware(),
        },
    )
    for key, old in previous.items():  # the other process's models, as it wrote them
        if key != "runs" and isinstance(result.get(key), dict):
            result[key] = {**old, **result[key]}
    if previous["runs"]:
        result["merged_from_earlier_run"] = sorted(previous["runs"])
    write_result(args.result, result)


def previous_runs(args: argparse.Namespace, results: dict) -> dict:
    """With ``--merge``: the per-model entries of ``ar_mnist.json`` for the models this
    process did not run (another process, run at the same time on the other core), else
    nothing; ``{"runs": {...}, <per-model key>: {...}}``."""
    path = RESULTS / f"{args.result}.json"
    if not (args.merge and path.exists()):
        return {"runs": {}}
    old = json.loads(path.read_text())
    kept = [m for m in old.get("runs", {}) if m not in results]
    return {
        key: {m: value[m] for m in kept if m in value}
        for key, value in old.items()
        if isinstance(value, dict) and (key == "runs" or set(value) & set(MODELS))
    } | {"runs": {m: old["runs"][m] for m in kept}}


if __name__ == "__main__":
    main()
