"""char-RNN learning-rate check: validation nats per character after a fixed number of Adam
steps, for several learning rates, on Tiny Shakespeare.

Why it exists: the learning rate of ``benchmarks/charrnn.py``'s 30-minute figure was chosen
by this check (``docs/RESULTS.md``, char-RNN). It trains the plain PyTorch loop of
``charrnn.py`` (``TorchLoop``: two LSTM layers of 256 on one-hot characters after a learned
start vector, a linear read-out, summed cross-entropy per window averaged over the batch,
``torch.optim.Adam(fused=True)``; its ``nll`` also scores the validation text), the same
network and step as the ``charrnn`` recipe, on nanoGPT's split (the first 90% of
``input.txt``): windows of 128, batch 64, the windows shuffled every epoch by a seeded numpy
generator, the learning rate decayed to 0 over ``--steps`` on a cosine. Each rate starts
from the same weights (``--seed``). Every run is then scored on the whole validation text
(111,540 characters: windows of 128 and the tail, each from the start state) in nats per
character, as ``ppgen eval`` scores a ``charrnn`` run. Counted in steps, not minutes, so the
figures do not depend on the machine's load.

    python benchmarks/charrnn_lr.py                                  # 2e-3, 5e-3, 1e-2; 800 steps
    python benchmarks/charrnn_lr.py --lrs 3e-3,5e-3 --steps 200 --threads 1

JSON keys (``benchmarks/results/charrnn_lr.json``, or ``<NAME>.json`` with ``--result``):
``val_nats_per_char`` (one per rate, keyed by the rate as written), ``final_train_loss``
(nats per character, the mean of the last 50 steps), ``steps``, ``best_lr``, ``minutes``,
``threads``, ``setting``, ``hardware``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, limit_threads, parse, result_name, write_result  # noqa: E402

from ppgen.recipes.base import positive, positive_int, seed_int  # noqa: E402

NAME = "charrnn_lr"
BATCH, WINDOW = 64, 128


def rates(text: str) -> list[float]:
    """``--lrs``: comma-separated positive learning rates."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive learning rates, got {text!r}")
    return values


def windows(ids, length: int):
    """Consecutive non-overlapping windows ``(len // length, length)`` as int64."""
    import numpy as np

    n = len(ids) // length
    return np.ascontiguousarray(ids[: n * length].reshape(n, length), dtype=np.int64)


def validation_nats(loop, ids) -> float:
    """Exact NLL of the text ``ids`` under ``loop``'s network, nats per character: windows
    of 128 and the shorter tail, each from the start state (as ``ppgen eval`` scores)."""
    import numpy as np
    import torch

    full = windows(ids, WINDOW)
    tail = np.asarray(ids[full.size :], dtype=np.int64)[None]
    batches = [full[i : i + 200] for i in range(0, len(full), 200)] + [tail] * bool(tail.size)
    with torch.no_grad():
        total = sum(float(loop.nll(torch.from_numpy(batch))) for batch in batches)
    return total / len(ids)


def train(lr: float, train_windows, valid, vocab: int, args: argparse.Namespace) -> dict:
    """``args.steps`` Adam steps at ``lr`` on a cosine; the validation figure and last loss."""
    import numpy as np
    import torch
    from charrnn import TorchLoop

    loop = TorchLoop(vocab, args.hidden, args.layers, lr, args.seed)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        loop.optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    rng = np.random.default_rng(args.seed)
    losses: list[float] = []
    while len(losses) < args.steps:
        order = rng.permutation(len(train_windows))
        for i in range(0, len(order) - BATCH + 1, BATCH):
            losses.append(loop.step(torch.from_numpy(train_windows[order[i : i + BATCH]])) / WINDOW)
            schedule.step()
            if len(losses) % 200 == 0:
                print(f"lr {lr:g}: step {len(losses)}, loss {losses[-1]:.4f}", flush=True)
            if len(losses) == args.steps:
                break
    tail = losses[-50:]
    return {"val": validation_nats(loop, valid), "train": sum(tail) / len(tail)}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--lrs", type=rates, default=[2e-3, 5e-3, 1e-2], help="comma-separated")
    p.add_argument("--steps", type=positive_int, default=800, help="Adam steps per rate")
    p.add_argument("--hidden", type=positive_int, default=256, help="LSTM units per layer")
    p.add_argument("--layers", type=positive_int, default=2, help="stacked LSTM layers")
    p.add_argument("--threads", type=positive(int), default=None,
                   help="torch's compute threads (default: torch's own)")  # fmt: skip
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--result", type=result_name, default=NAME,
                   help="name of the JSON written to benchmarks/results/")  # fmt: skip
    args = parse(p)
    limit_threads(args.threads)

    from ppgen import data as ppdata

    clock = Stopwatch()
    corpus = ppdata.load_text("shakespeare", "train")
    valid = ppdata.load_text("shakespeare", "valid").ids
    train_windows = windows(corpus.ids, WINDOW)
    vocab = corpus.vocabulary.size
    runs = {f"{lr:g}": train(lr, train_windows, valid, vocab, args) for lr in args.lrs}
    for lr, r in runs.items():
        print(f"lr {lr}: validation {r['val']:.4f} nats/char, last loss {r['train']:.4f}")
    write_result(
        args.result,
        {
            "val_nats_per_char": {lr: r["val"] for lr, r in runs.items()},
            "final_train_loss": {lr: r["train"] for lr, r in runs.items()},
            "best_lr": min(runs, key=lambda lr: runs[lr]["val"]),
            "steps": args.steps,
            "minutes": clock.minutes(),
            "threads": args.threads,
            "hardware": hardware(),
            "setting": f"plain PyTorch char-RNN ({args.layers} x {args.hidden} LSTM, one-hot "
            f"characters), windows of {WINDOW}, batch {BATCH}, Adam with a cosine decay over "
            f"{args.steps} steps, seed {args.seed}; whole validation text, nats per character",
        },
    )


if __name__ == "__main__":
    main()
