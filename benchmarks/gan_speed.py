"""Seconds per epoch of a DCGAN-style generator and critic on MNIST: ppgen-pyro and
ppgen-numpyro (``ppgen train gan``'s trainer, built by the recipe) against a plain PyTorch
loop written below, in one process, interleaved.

The three train the same networks (ppgen's DCGAN generator, channels 128 and 64 on the 7x7
and 14x14 maps, and critic, 64 and 128 channels; no batch normalisation) with the
non-saturating loss (Goodfellow et al. 2014), one critic update per generator update, Adam
(lr 1e-4, betas (0.5, 0.9)) for each player, batch 64, on the same rows of MNIST's training
split. The plain loop starts from ppgen-pyro's initial weights and is what one writes by hand:
``D(x)``, ``D(G(z).detach())`` for the critic's step, ``D(G(z))`` for the generator's. Each
repeat times one "epoch" of ``--steps`` steps of each of the three in turn (the first
repeat, which includes JAX's compilation, is dropped); the ratio is of the medians, and the
full-epoch seconds are the per-step medians times the steps of an epoch (50,000 / 64).

    python benchmarks/gan_speed.py                 # 5 repeats of 100 steps
    python benchmarks/gan_speed.py --quick         # 2 repeats of 5 steps (gan_speed_quick.json)

JSON keys: ``pyro_vs_torch``, ``numpyro_vs_torch`` (ratios of median seconds per epoch),
``seconds_per_epoch`` (per implementation), ``steps``, ``repeats``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import hardware, limit_threads, parse, quick_settings, write_result  # noqa: E402

BATCH, LR, BETAS = 64, 1e-4, (0.5, 0.9)
TRAIN_ROWS = 50_000


def ppgen_trainer(backend: str, rows):
    """The gan recipe's trainer on ``rows`` (the run's data swapped for them)."""
    from ppgen.config import RunConfig
    from ppgen.recipes import backend as get_backend
    from ppgen.recipes.base import FitData
    from ppgen.recipes.registry import get_recipe

    recipe = get_recipe("gan")
    options = recipe.options(loss="nonsaturating")
    config = RunConfig(model="gan", backend=backend, dataset="mnist", epochs=1,
                       batch_size=BATCH, lr=LR, options=options)  # fmt: skip
    data = FitData(train=rows, valid=None, test=None, num_data=len(rows), image_shape=(28, 28))
    built = recipe.build(config, data, get_backend(backend))
    return built


def plain_torch(built_pyro, rows):
    """A hand-written PyTorch loop on copies of ppgen-pyro's initial networks: returns
    ``epoch(epoch_index)``."""
    import copy

    import torch
    from torch.nn.functional import softplus

    generator = copy.deepcopy(built_pyro.model.generator)
    critic = copy.deepcopy(built_pyro.objective.critic)
    opt_g = torch.optim.Adam(generator.parameters(), lr=LR, betas=BETAS)
    opt_d = torch.optim.Adam(critic.parameters(), lr=LR, betas=BETAS)
    x_all = torch.as_tensor(rows)
    z_dim = built_pyro.model.z_dim

    def epoch(index: int) -> None:
        g = torch.Generator().manual_seed(index)
        order = torch.randperm(len(x_all), generator=g)
        for start in range(0, len(x_all) - BATCH + 1, BATCH):
            x = x_all[order[start : start + BATCH]]
            fake = torch.sigmoid(generator(torch.randn(BATCH, z_dim))).reshape(BATCH, -1)
            loss_d = (softplus(-critic(x)) + softplus(critic(fake.detach()))).mean()
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            fake = torch.sigmoid(generator(torch.randn(BATCH, z_dim))).reshape(BATCH, -1)
            loss_g = softplus(-critic(fake)).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parse(parser)
    if args.quick:
        quick_settings(parser, args, {"steps": 5, "repeats": 2})
    limit_threads(args.threads)
    import numpy as np

    from ppgen import data as ppdata

    rows = ppdata.load_dataset("mnist", "train").x[: args.steps * BATCH].astype(np.float32)
    built = {b: ppgen_trainer(b, rows) for b in ("pyro", "numpyro")}
    states = {b: built[b].trainer.init(0, rows) for b in built}
    epochs = {"torch": plain_torch(built["pyro"], rows)}
    for b in built:

        def run(index: int, b=b) -> None:
            states[b], _ = built[b].trainer.train_epoch(states[b], rows, index)

        epochs[b] = run
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for r in range(args.repeats + 1):
        for name, epoch in epochs.items():
            t0 = time.perf_counter()
            epoch(r)
            if r > 0:  # the first repeat compiles
                times[name].append(time.perf_counter() - t0)
        print(r, {k: round(v[-1], 3) for k, v in times.items() if v}, flush=True)
    per_epoch = {
        k: statistics.median(v) / args.steps * (TRAIN_ROWS // BATCH) for k, v in times.items()
    }
    write_result("gan_speed_quick" if args.quick else "gan_speed", {
        "pyro_vs_torch": per_epoch["pyro"] / per_epoch["torch"],
        "numpyro_vs_torch": per_epoch["numpyro"] / per_epoch["torch"],
        "seconds_per_epoch": per_epoch,
        "steps": args.steps,
        "repeats": args.repeats,
        "batch_size": BATCH,
        "hardware": hardware(),
    })  # fmt: skip


if __name__ == "__main__":
    main()
