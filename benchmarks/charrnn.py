"""char-RNN on Tiny Shakespeare: validation nats per character within a wall-clock budget,
and the training step time of ppgen's two backends against a plain PyTorch loop.

Timing: three implementations of the same training step, in one process, interleaved: a
plain PyTorch loop written below (``nn.LSTM`` on one-hot characters after a learned start
vector, a linear read-out, summed cross-entropy, ``torch.optim.Adam(fused=True)``), ppgen's
Pyro backend and ppgen's NumPyro backend (each the ``charrnn`` recipe's own trainer:
``Trainer.train_epoch`` on ``--round-steps`` batches; NumPyro's is one jitted ``lax.scan``).
Same LSTM (``--layers`` x ``--hidden``), batch (64 windows), sequence length (128), Adam. After
a warm-up round each (it includes JAX's compile), ``--rounds`` timed rounds, the order
rotated every round; the ratios are the medians of the per-round ratios of seconds per step
(``pyro_vs_torch``, ``numpyro_vs_torch``; below 1 is faster than PyTorch).

Training: ``ppgen train charrnn --dataset shakespeare`` (nanoGPT's split: the first 90% of
``input.txt`` to train, the last 10% to validate), the recipe's defaults (two LSTM layers of
256 on one-hot characters, windows of 128, batch 64, Adam 5e-3, or the rate ``--lr`` gives)
with a cosine-decayed learning rate, on the backend with the shorter step (``--backend
auto``) or the one given. The timed rounds give the seconds per epoch; the epochs are
planned to end within 90% of ``--minutes`` (at most ``--max-epochs``), and the driver's
time limit stops training after the epoch in which the budget runs out. The checkpoint kept
is the epoch of the best validation NLL (nanoGPT's "best val loss"). The figure is the exact
NLL of the whole validation text (111,540 characters) in windows of 128 scored from the
LSTM's start state, in nats per character. nanoGPT's figures on the same split (its README,
as cross-entropy in nats): 1.88 with its CPU configuration (a 4-layer 128-wide transformer,
2,000 iterations), 1.4697 with its GPU one.

    python benchmarks/charrnn.py                          # timing, then 30 minutes of training
    python benchmarks/charrnn.py --threads 1              # sharing the machine with another
    python benchmarks/charrnn.py --minutes 1 --rounds 2 --round-steps 4 --max-chars 40000
    python benchmarks/charrnn.py --timing-only --result charrnn_timing   # the ratios only

(the third line checks the script on cut data). JSON keys (``benchmarks/results/charrnn.json``,
or ``<NAME>.json`` with ``--result NAME``), of every run: ``pyro_vs_torch``,
``numpyro_vs_torch``, ``seconds_per_step`` (median of each implementation), ``round_ratios``
and ``round_seconds_per_step`` (every round's), ``minutes`` (the whole script), ``setting``,
``threads``, ``hardware``; of a run that trains (not ``--timing-only``), also
``val_nats_per_char``, ``val_bits_per_char``, ``eval`` (the evaluation's whole output),
``train_minutes``, ``budget_minutes``, ``epochs``, ``epochs_planned``, ``best_epoch``,
``backend``, ``lr``, ``max_epochs`` (``None``: as many as fit), ``sample_path`` (a generated
text, 500 characters after the prompt ``ROMEO:``) and ``nanogpt_val_nats_per_char``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DefaultsHelp,
    Stopwatch,
    add_threads_flag,
    check_run_dirs,
    hardware,
    limit_threads,
    parse,
    planned_epochs,
    result_name,
    train_fresh,
    write_result,
)

from ppgen.recipes.base import non_negative_int, positive, positive_int, seed_int  # noqa: E402

NAME = "charrnn"
BACKENDS = ("pyro", "numpyro")
NANOGPT = {"cpu": 1.88, "gpu": 1.4697}
# what --timing-only never uses
TRAINING_FLAGS = ("minutes", "backend", "eval_limit", "out", "max_epochs")
PLAN = 0.9  # the share of the budget the epochs are planned for (checkpoints, compiles)


def config(backend_name: str, epochs: int, args: argparse.Namespace):
    """The run (``ppgen train charrnn`` with these flags; the recipe's batch and window, and its
    learning rate unless ``--lr`` is given)."""
    from ppgen import runs

    lr = {} if args.lr is None else {"lr": args.lr}
    return runs.make_config(
        "charrnn",
        backend=backend_name,
        dataset="shakespeare",
        epochs=epochs,
        lr_schedule="cosine",
        seed=args.seed,
        train_split="train",
        hidden=args.hidden,
        layers=args.layers,
        max_chars=args.max_chars,
        **lr,
    )


class TorchLoop:
    """The reference: a plain PyTorch char-RNN training step of the same size.

    ``logits_t = W LSTM(u_0..u_t) + b`` with ``u_0`` a learned start vector and ``u_t`` the
    one-hot code of ``x_{t-1}``; the loss is the summed cross-entropy per window, averaged
    over the batch; ``torch.optim.Adam(fused=True)``, as ppgen's Pyro trainer uses.
    """

    def __init__(self, vocab: int, hidden: int, layers: int, lr: float, seed: int) -> None:
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.vocab = vocab
        self.start = nn.Parameter(torch.zeros(vocab))
        self.lstm = nn.LSTM(vocab, hidden, layers, batch_first=True)
        self.output = nn.Linear(hidden, vocab)
        params = [self.start, *self.lstm.parameters(), *self.output.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=lr, fused=True)

    def nll(self, x):
        """Summed cross-entropy (nats) of windows ``x`` (``(batch, T)`` int64 tensor), each
        scored from the start vector: a scalar tensor."""
        import torch
        import torch.nn.functional as F

        u = F.one_hot(x[:, :-1], self.vocab).float()
        u = torch.cat([self.start.expand(x.shape[0], 1, -1), u], dim=1)
        h, _ = self.lstm(u)
        logits = self.output(h)
        return F.cross_entropy(logits.reshape(-1, self.vocab), x.reshape(-1), reduction="sum")

    def step(self, x) -> float:
        """One Adam step on windows ``x`` (``(batch, T)`` int64 tensor); returns the loss."""
        loss = self.nll(x) / x.shape[0]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def time_steps(args: argparse.Namespace) -> dict:
    """Seconds per step of PyTorch, ppgen-pyro and ppgen-numpyro over interleaved rounds."""
    import numpy as np
    import torch

    from ppgen.recipes import backend

    runners = {}
    for name in BACKENDS:
        cfg = config(name, 1, args)
        data = cfg.recipe.prepare(cfg)
        cfg = cfg.recipe.settle(cfg, data)
        if len(data.train) < args.round_steps * cfg.batch_size:  # else a round is short
            raise SystemExit(
                f"charrnn.py: error: a timed round of --round-steps {args.round_steps} needs "
                f"{args.round_steps * cfg.batch_size} training windows, the data has "
                f"{len(data.train)}; lower --round-steps or raise --max-chars"
            )
        trainer = cfg.recipe.build(cfg, data, backend(name)).trainer
        rows = data.train[: args.round_steps * cfg.batch_size]
        state = [trainer.init(cfg.seed, data.train)]

        def run(epoch, trainer=trainer, rows=rows, state=state):
            state[0], _ = trainer.train_epoch(state[0], rows, epoch)

        runners[f"ppgen-{name}"] = run
    vocab, batch = len(cfg.options.vocabulary), cfg.batch_size
    torch_loop = TorchLoop(vocab, args.hidden, args.layers, cfg.lr, args.seed)
    windows = torch.as_tensor(np.asarray(data.train, dtype=np.int64))
    rng = np.random.default_rng(args.seed)

    def run_torch(epoch):
        idx = torch.as_tensor(rng.permutation(len(windows))[: args.round_steps * batch])
        for i in range(args.round_steps):
            torch_loop.step(windows[idx[i * batch : (i + 1) * batch]])

    runners = {"torch": run_torch, **runners}
    names = list(runners)
    for name in names:  # warm-up: JAX compiles, caches fill
        runners[name](0)
    seconds = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            runners[name](r + 1)
            seconds[name].append((time.perf_counter() - t0) / args.round_steps)
        print(
            f"round {r + 1}: "
            + ", ".join(f"{n} {seconds[n][-1] * 1e3:.0f} ms/step" for n in names),
            flush=True,
        )
    torch_s = seconds["torch"]
    ratios = {
        f"{b}_vs_torch": [p / t for p, t in zip(seconds[f"ppgen-{b}"], torch_s, strict=True)]
        for b in BACKENDS
    }
    return {
        "seconds_per_step": {n: statistics.median(s) for n, s in seconds.items()},
        "round_seconds_per_step": seconds,
        "round_ratios": ratios,
        **{k: statistics.median(v) for k, v in ratios.items()},
        "valid_windows": 0 if data.valid is None else len(data.valid),
        "train_windows": len(data.train),
        "batch_size": batch,
    }


def seconds_per_valid_window(backend_name: str, args: argparse.Namespace) -> float:
    """Seconds to validate one window (a slice of 100, timed after a first pass)."""
    from ppgen.recipes import backend

    cfg = config(backend_name, 1, args)
    data = cfg.recipe.prepare(cfg)
    cfg = cfg.recipe.settle(cfg, data)
    trainer = cfg.recipe.build(cfg, data, backend(backend_name)).trainer
    state = trainer.init(cfg.seed, data.train)
    rows = data.valid[:100]
    trainer.evaluate(state, rows)
    t0 = time.perf_counter()
    trainer.evaluate(state, rows)
    return (time.perf_counter() - t0) / len(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsHelp)
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                   help="backend to train on (auto: the shorter step in the timing)")  # fmt: skip
    p.add_argument("--minutes", type=positive(float), default=30.0, help="training budget")
    add_threads_flag(p)
    p.add_argument("--hidden", type=positive_int, default=256, help="LSTM units per layer")
    p.add_argument("--layers", type=positive_int, default=2, help="stacked LSTM layers")
    p.add_argument("--lr", type=positive(float), default=None,
                   help="Adam's learning rate (default: the recipe's, 5e-3)")  # fmt: skip
    p.add_argument("--max-epochs", type=positive_int, default=None,
                   help="plan at most N epochs (the cosine schedule ends sooner; default: as "
                   "many as fit the budget)")  # fmt: skip
    p.add_argument("--rounds", type=positive_int, default=7,
                   help="timed rounds of each implementation")  # fmt: skip
    p.add_argument("--round-steps", type=positive_int, default=10,
                   help="training steps per round")  # fmt: skip
    p.add_argument("--eval-limit", type=positive_int, default=None,
                   help="score the first N validation windows only")  # fmt: skip
    p.add_argument("--max-chars", type=non_negative_int, default=0,
                   help="the recipe's --max-chars: the first N characters of every split "
                   "(0: all; a check of the script)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the run")
    p.add_argument("--out", type=Path, default=Path("runs/bench_charrnn"),
                   help="run directory (an earlier benchmark run there is replaced; a "
                   "directory holding anything else is refused)")  # fmt: skip
    p.add_argument("--result", type=result_name, default=NAME,
                   help="name of the JSON written to benchmarks/results/")  # fmt: skip
    p.add_argument("--timing-only", action="store_true",
                   help="the step-time rounds only (no training): the ratios' JSON")  # fmt: skip
    args = parse(p)
    idle = [
        f"--{k.replace('_', '-')}" for k in TRAINING_FLAGS if getattr(args, k) != p.get_default(k)
    ]
    if args.timing_only and idle:
        p.error(f"--timing-only trains nothing: {', '.join(idle)} would do nothing; drop it")
    limit_threads(args.threads)  # before anything imports jax
    if not args.timing_only:
        check_run_dirs(args.out)  # refused before the timing rounds, not after them

    from ppgen import runs
    from ppgen.recipes.charrnn import CharRNNSampleOptions

    clock = Stopwatch()
    timing = time_steps(args)
    per_step = timing["seconds_per_step"]
    cut = f"; every split cut to {args.max_chars} characters" if args.max_chars else ""
    timed = {  # the keys of every run
        "pyro_vs_torch": timing["pyro_vs_torch"],
        "numpyro_vs_torch": timing["numpyro_vs_torch"],
        "seconds_per_step": per_step,
        "round_ratios": timing["round_ratios"],
        "round_seconds_per_step": timing["round_seconds_per_step"],
        "threads": args.threads,
        "hardware": hardware(),
    }
    if args.timing_only:
        setting = (
            f"timing only: {args.layers} x {args.hidden} LSTM on one-hot characters, windows "
            f"of 128, batch {timing['batch_size']}; {args.rounds} interleaved rounds of "
            f"{args.round_steps} steps, medians{cut}"
        )
        write_result(args.result, {**timed, "minutes": clock.minutes(), "setting": setting})
        return
    chosen = args.backend
    if chosen == "auto":
        chosen = min(BACKENDS, key=lambda b: per_step[f"ppgen-{b}"])
    steps = timing["train_windows"] // timing["batch_size"]
    epoch_seconds = per_step[f"ppgen-{chosen}"] * steps + timing[
        "valid_windows"
    ] * seconds_per_valid_window(chosen, args)
    epochs = planned_epochs(epoch_seconds, PLAN * args.minutes, args.max_epochs)
    print(
        f"pyro/torch {timing['pyro_vs_torch']:.2f}, numpyro/torch "
        f"{timing['numpyro_vs_torch']:.2f}; training on {chosen}: {epoch_seconds:.0f} s/epoch "
        f"-> {epochs} epochs",
        flush=True,
    )

    result, run, train_minutes = train_fresh(
        config(chosen, epochs, args), args.out, time_limit=args.minutes * 60
    )
    ev = runs.evaluate(run, limit=args.eval_limit, progress=False)
    options = CharRNNSampleOptions(prompt="ROMEO:", length=500)
    sample = run.recipe.save_samples(
        run, runs.sample(run, 1, seed=args.seed, options=options), args.out / "sample.txt"
    )
    runs.save_pictures(run)
    print(
        f"{len(result.history)} of {epochs} epochs in {train_minutes:.1f} min: validation "
        f"{ev['test_nats_per_char']:.4f} nats/char; a sample in {sample}",
        flush=True,
    )
    write_result(
        args.result,
        {
            **timed,
            "val_nats_per_char": ev["test_nats_per_char"],
            "val_bits_per_char": ev["test_bits_per_char"],
            "minutes": clock.minutes(),
            "train_minutes": train_minutes,
            "budget_minutes": args.minutes,
            "epochs": len(result.history),
            "epochs_planned": epochs,
            "best_epoch": run.epoch + 1,
            "backend": chosen,
            "lr": run.config.lr,
            "max_epochs": args.max_epochs,
            "sample_path": str(sample),
            "nanogpt_val_nats_per_char": NANOGPT,
            "eval": ev,
            "setting": f"Tiny Shakespeare (nanoGPT's 90/10 split), {args.layers} x "
            f"{args.hidden} LSTM on one-hot characters, windows of 128, batch "
            f"{timing['batch_size']}, Adam {run.config.lr} cosine over the planned epochs, "
            f"{chosen} backend, exact validation NLL in nats per character"
            + (f" on the first {args.eval_limit} windows" if args.eval_limit else "")
            + cut
            + f"; timing: {args.rounds} interleaved rounds of {args.round_steps} steps, "
            "medians",
        },
    )


if __name__ == "__main__":
    main()
