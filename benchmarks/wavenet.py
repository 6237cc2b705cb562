"""Test bits per audio sample of WaveNet on the speech corpus within a wall-clock budget,
against two baselines counted on the same mu-law data: the i.i.d. marginal and a
first-order Markov (bigram) model.

WaveNet is what ``ppgen train wavenet --dataset speech`` builds (``ppgen.recipes.wavenet``):
one stack of 10 dilated layers (receptive field 1024 samples, 64 ms at 16 kHz), 32 residual
and 128 skip channels, a ``Categorical(256)`` over 8-bit mu-law codes, unconditioned; the
training utterances cut into segments of 4096 samples, batch 8, Adam 1e-2 with a cosine
schedule over the planned epochs. A timed probe (``--probe-steps`` steps, after a first pass
that compiles) gives the seconds per epoch on each backend; the faster one trains (``--backend
auto``; NumPyro with the trainer's ``epoch_loop="steps"``, which the recipe chooses: XLA on
CPU runs convolutions about 15x slower inside an epoch's ``lax.scan``), the number of epochs is
set so that the schedule ends on time, and the driver's time limit stops training after the
epoch in which the budget runs out. ``ppgen eval`` then scores every test utterance whole,
from its first sample: the exact NLL in bits per sample.

Baselines, on the same test utterances (``--eval-limit`` applies to both): counts over the
training utterances' mu-law codes with add-one (Laplace) smoothing, ``p(b | a) = (C[a, b] +
1) / (C[a] + 256)`` for the bigram and ``p(b) = (n_b + 1) / (N + 256)`` for the marginal,
which also scores the bigram's first sample of every utterance (it has no predecessor).

Pictures: a generated clip of ``--seconds`` (the cached sampler, seed 0) written as a 16 kHz
WAV, the start of the first test utterance as another, and the recipe's spectrogram picture of
the two side by side (``plots.save_spectrograms``), with the training curves, in
``--figures`` (default ``benchmarks/results/wavenet/``).

    python benchmarks/wavenet.py                    # 60 minutes of training, then eval
    python benchmarks/wavenet.py --threads 1        # the same on one core
    python benchmarks/wavenet.py --quick            # about a minute: checks the script
    python benchmarks/wavenet.py --minutes 2 --max-utterances 8 --eval-limit 1  # the probe path
    python benchmarks/wavenet.py --minutes 60 --max-epochs 3 --lr 3e-3 --result wavenet_lr3e-3
                                                    # a learning-rate check: 3 epochs

``--max-utterances N`` cuts every split to its first N utterances (the recipe's option), the
baselines' training counts included; the baselines always score the test utterances WaveNet
was scored on.

JSON keys (last line, and ``benchmarks/results/wavenet.json``): ``wavenet_bits_per_sample``,
``bigram_bits_per_sample``, ``iid_bits_per_sample`` (test, bits per audio sample),
``ratio`` (WaveNet over bigram; the bar is ``<= 0.7``), ``minutes`` (the whole script),
``train_minutes``, ``epochs``, ``backend`` (the one trained) and ``probe_seconds_per_epoch``
(each backend probed), ``lr``, ``max_epochs`` (``None``: as many as fit), ``clip``,
``real_clip``, ``spectrogram``, ``curves`` (paths relative to the repository), ``samples``
and ``utterances`` scored, ``setting``, ``hardware``.
``--result NAME`` writes ``NAME.json`` instead and, without ``--figures``, the pictures to
``benchmarks/results/NAME/``. ``--quick`` trains a tiny WaveNet for one epoch on 4 utterances
and writes ``wavenet_quick.json`` (with ``--result NAME``: ``NAME_quick.json``), its
pictures in a temporary folder unless ``--figures`` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DefaultsHelp,
    Stopwatch,
    add_threads_flag,
    check_run_dirs,
    check_writable_dir,
    hardware,
    limit_threads,
    parse,
    planned_epochs,
    probe_seconds_per_epoch,
    quick_settings,
    result_name,
    train_fresh,
    write_result,
)

from ppgen.recipes.base import (  # noqa: E402
    non_negative_int,
    positive,
    positive_int,
    seed_int,
)

NAME = "wavenet"
ROOT = Path(__file__).resolve().parent.parent
LEVELS = 256  # 8-bit mu-law
QUICK_ARCHITECTURE = {"layers": 4, "residual_channels": 8, "skip_channels": 16, "segment_len": 512}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelp)
    p.add_argument(
        "--backend",
        choices=("auto", "pyro", "numpyro"),
        default="auto",
        help="auto: probe both and train on the faster",
    )
    p.add_argument("--minutes", type=positive(float), default=60.0, help="training budget")
    p.add_argument("--batch-size", type=positive_int, default=8, help="segments per step")
    p.add_argument(
        "--lr",
        type=positive(float),
        default=None,
        help="Adam's peak learning rate, cosine (default: the recipe's, 1e-2)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the run")
    p.add_argument("--probe-steps", type=positive_int, default=5, help="steps of the timed probe")
    p.add_argument(
        "--eval-limit", type=positive_int, default=None, help="first N test utterances only"
    )
    p.add_argument(
        "--seconds", type=positive(float), default=2.0, help="length of the generated clip"
    )
    add_threads_flag(p)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench_wavenet"),
        help="run directory (an earlier benchmark run there is replaced; a directory holding "
        "anything else is refused)",
    )
    p.add_argument(
        "--figures",
        type=Path,
        default=None,
        help="folder of the clips and pictures (default: benchmarks/results/<--result>/)",
    )
    p.add_argument(
        "--max-utterances",
        type=non_negative_int,
        default=0,
        help="train (and count the baselines) on the first N training utterances; 0: all",
    )
    p.add_argument(
        "--max-epochs",
        type=positive_int,
        default=None,
        help="plan at most N epochs (the cosine schedule ends sooner; default: as many as fit "
        "the budget)",
    )
    p.add_argument(
        "--result",
        type=result_name,
        default=NAME,
        help="name of the JSON written to benchmarks/results/ (and of the pictures' folder)",
    )
    p.add_argument("--quick", action="store_true", help="a tiny WaveNet, one epoch")
    args = parse(p)
    if args.quick:  # its tiny network for one epoch, no probe, a scratch run directory
        quick_settings(
            p,
            args,
            {"seconds": 0.25, "max_utterances": 4},
            ("minutes", "max_epochs", "probe_steps", "out"),
        )
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    limit_threads(ARGS.threads)

import numpy as np  # noqa: E402

from ppgen import data as ppdata  # noqa: E402
from ppgen import runs  # noqa: E402
from ppgen.config import RunConfig  # noqa: E402
from ppgen.recipes.wavenet import WaveNetSampleOptions  # noqa: E402


def config(backend_name: str, epochs: int, args: argparse.Namespace) -> RunConfig:
    """The run (``ppgen train wavenet`` with these flags) on ``backend_name``."""
    extra = {"max_utterances": args.max_utterances, **(QUICK_ARCHITECTURE if args.quick else {})}
    if args.lr is not None:  # otherwise the recipe's rate
        extra["lr"] = args.lr
    return runs.make_config(
        "wavenet",
        backend=backend_name,
        dataset="speech",
        epochs=epochs,
        batch_size=args.batch_size,
        lr_schedule="cosine",
        seed=args.seed,
        picture_seconds=args.seconds,
        **extra,
    )


def seconds_per_epoch(backend_name: str, args: argparse.Namespace) -> float:
    """Seconds per epoch on ``backend_name``, from a timed probe of ``args.probe_steps`` steps
    through the recipe's own trainer (a first pass compiles; the second is timed)."""
    return probe_seconds_per_epoch(config(backend_name, 1, args), args.probe_steps)


def mu_law_utterances(split: str, limit: int | None) -> list[np.ndarray]:
    """The 8-bit mu-law codes of the first ``limit`` utterances of ``split`` (all: None)."""
    return ppdata.load_audio("speech", split).mu_law(LEVELS)[:limit]


def baselines(train: list[np.ndarray], test: list[np.ndarray]) -> dict:
    """Test bits per sample of the add-one i.i.d. marginal and bigram counted on ``train``
    (every test utterance's first sample scored by the marginal in the bigram)."""
    unigram = np.ones(LEVELS)
    pairs = np.ones((LEVELS, LEVELS))
    for x in train:
        unigram += np.bincount(x, minlength=LEVELS)
        np.add.at(pairs, (x[:-1], x[1:]), 1)
    log_marginal = np.log2(unigram / unigram.sum())
    log_bigram = np.log2(pairs / pairs.sum(axis=1, keepdims=True))
    samples = sum(len(x) for x in test)
    iid = -sum(log_marginal[x].sum() for x in test)
    bigram = -sum(log_marginal[x[0]] + log_bigram[x[:-1], x[1:]].sum() for x in test)
    return {
        "iid_bits_per_sample": float(iid / samples),
        "bigram_bits_per_sample": float(bigram / samples),
    }


def relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (no machine paths in results)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def clips(run, figures: Path, seconds: float) -> dict:
    """The generated clip and the start of the first test utterance as WAVs, and the recipe's
    pictures (its spectrogram draws the same clip: seed 0, ``seconds``)."""
    figures.mkdir(parents=True, exist_ok=True)
    recipe = run.config.recipe
    generated = recipe.sample(run, 1, seed=0, options=WaveNetSampleOptions(seconds=seconds))
    clip = recipe.save_samples(run, generated, figures / "generated.wav")
    length = generated.shape[-1]
    real = ppdata.mu_law_decode(mu_law_utterances("test", 1)[0][:length])
    real_clip = ppdata.write_wav(figures / "real.wav", real, ppdata.SPEECH_RATE, overwrite=True)
    curves, spectrogram = recipe.pictures(run, figures)
    paths = {"clip": clip, "real_clip": real_clip, "spectrogram": spectrogram, "curves": curves}
    return {k: relative(v) for k, v in paths.items()}


def setting(cfg: RunConfig, limit: int | None) -> str:
    """The run's data, network and optimiser in words."""
    o = cfg.options
    return (
        f"speech corpus, 16 kHz, 8-bit mu-law; WaveNet {o.stacks} x {o.layers} layers, "
        f"{o.residual_channels} residual / {o.skip_channels} skip channels, segments of "
        f"{o.segment_len}, batch {cfg.batch_size}, Adam {cfg.lr} cosine over the planned "
        f"epochs, {cfg.backend}; test utterances scored whole"
        + (f" (the first {limit})" if limit else "")
    )


def main(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    clock = Stopwatch()
    names = ("pyro", "numpyro") if args.backend == "auto" else (args.backend,)
    speed = {}
    with tempfile.TemporaryDirectory() as scratch:
        if args.quick:
            args.out = Path(scratch) / "run"
            args.figures = args.figures or Path(scratch) / "figures"
            epochs, chosen = 1, names[-1]
        figures = args.figures or ROOT / "benchmarks" / "results" / args.result
        check_run_dirs(args.out)  # refused before the probe, not after an hour
        check_writable_dir(figures, "--figures")
        if not args.quick:
            for name in names:
                speed[name] = seconds_per_epoch(name, args)
                print(f"{name}: {speed[name]:.0f} s/epoch (probe)", flush=True)
            chosen = min(speed, key=speed.get)
            epochs = planned_epochs(speed[chosen], args.minutes, args.max_epochs)
            if speed[chosen] > args.minutes * 60:
                print("one epoch takes longer than the budget; training runs that one epoch")
            print(f"training on {chosen}: {epochs} epochs", flush=True)
        result, run, train_minutes = train_fresh(
            config(chosen, epochs, args),
            args.out,
            progress=not args.quick,
            time_limit=args.minutes * 60,
        )
        limit = 1 if args.quick else args.eval_limit
        ev = runs.evaluate(run, limit=limit, progress=not args.quick)
        train = mu_law_utterances("train", args.max_utterances or None)
        # the test utterances WaveNet was scored on (the first ev["utterances"] of them)
        base = baselines(train, mu_law_utterances("test", ev["utterances"]))
        paths = clips(run, figures, args.seconds)
    wavenet = ev["test_bits_per_sample"]
    ratio = wavenet / base["bigram_bits_per_sample"]
    print(
        f"WaveNet {wavenet:.4f} bits/sample, bigram {base['bigram_bits_per_sample']:.4f}, "
        f"i.i.d. {base['iid_bits_per_sample']:.4f}: ratio {ratio:.3f} (bar 0.7)",
        flush=True,
    )
    for key, path in paths.items():
        print(f"{key}: {path}", flush=True)
    write_result(
        f"{args.result}_quick" if args.quick else args.result,
        {
            "wavenet_bits_per_sample": wavenet,
            **base,
            "ratio": ratio,
            "minutes": clock.minutes(),
            "train_minutes": train_minutes,
            "budget_minutes": args.minutes,
            "epochs": len(result.history),
            "epochs_planned": epochs,
            "backend": chosen,
            "epoch_loop": run.config.recipe.epoch_loop(run.config),
            "probe_seconds_per_epoch": speed,
            **paths,
            "samples": ev["samples"],
            "utterances": ev["utterances"],
            "train_utterances": len(train),
            "setting": setting(run.config, limit),
            "threads": args.threads,
            "lr": run.config.lr,
            "max_epochs": args.max_epochs,
            "quick": args.quick,
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main(ARGS)
