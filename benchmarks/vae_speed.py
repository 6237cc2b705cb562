"""Seconds per epoch of the same VAE in ppgen-pyro, ppgen-numpyro and a plain PyTorch loop.

Setting: the 60k MNIST training set (statically binarized once), z=50, one hidden layer of
400 softplus units, Bernoulli decoder, batch 256, Adam(1e-3), one-particle Monte Carlo
ELBO scaled per dataset. The three run in one process with their epochs interleaved; after
a warm-up epoch each (it includes JAX's compile), the median of ``--epochs`` epochs is
compared. The plain PyTorch loop written below is the reference.

    python benchmarks/vae_speed.py --epochs 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, median, parse, write_result  # noqa: E402

from ppgen import data as ppdata  # noqa: E402

LATENT, HIDDEN, BATCH, LR = 50, 400, 256, 1e-3


class TorchVAE(nn.Module):
    """The reference: the same network and loss as ppgen's VAE, in plain PyTorch."""

    def __init__(self, x_dim: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Linear(x_dim, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, 2 * LATENT)
        )
        self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, x_dim))

    def loss(self, x: torch.Tensor, num_data: int) -> torch.Tensor:
        loc, pre = self.enc(x).chunk(2, dim=-1)
        scale = F.softplus(pre) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        logits = self.dec(z)
        log_px = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        return -(log_px + log_pz - log_qz).sum() * (num_data / len(x))


def torch_epoch(model, opt, x: torch.Tensor, epoch: int) -> float:
    perm = torch.from_numpy(ppdata.minibatch_indices(len(x), BATCH, seed=0, epoch=epoch))
    total = 0.0
    for idx in perm:
        loss = model.loss(x[idx.long()], len(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
    return total / len(perm) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (after 1 warm-up)")
    parser.add_argument("--limit", type=int, default=None, help="use only N training examples")
    args = parse(parser)
    clock = Stopwatch()

    x = ppdata.load_mnist("train_full", binarize="static", seed=0).x[: args.limit]
    n, x_dim = x.shape
    from ppgen.inference import numpyro as inf_j
    from ppgen.inference import pyro as inf_t
    from ppgen.models import numpyro as mod_j
    from ppgen.models import pyro as mod_t

    kw = dict(latent=LATENT, hidden=(HIDDEN,), activation="softplus", seed=0)
    pyro_vae, jax_vae = mod_t.VAE(x_dim, **kw), mod_j.VAE(x_dim, **kw)
    trainers = {
        "pyro": inf_t.Trainer(
            pyro_vae.model, pyro_vae.guide, inf_t.ELBO(), lr=LR, batch_size=BATCH, num_data=n
        ),
        "numpyro": inf_j.Trainer(
            jax_vae.model, jax_vae.guide, inf_j.ELBO(), lr=LR, batch_size=BATCH, num_data=n
        ),
    }
    states = {k: t.init(0, x[:BATCH]) for k, t in trainers.items()}
    torch.manual_seed(0)
    ref = TorchVAE(x_dim)
    # Fused Adam, as ppgen's Pyro trainer uses: the ratio then measures Pyro's overhead only.
    ref_opt = torch.optim.Adam(ref.parameters(), lr=LR, fused=True)
    xt = torch.from_numpy(x)

    times: dict[str, list[float]] = {"torch": [], "pyro": [], "numpyro": []}
    losses: dict[str, float] = {}
    for epoch in range(args.epochs + 1):
        for name in ("torch", "pyro", "numpyro"):
            t0 = time.perf_counter()
            if name == "torch":
                losses[name] = torch_epoch(ref, ref_opt, xt, epoch)
            else:
                states[name], m = trainers[name].train_epoch(states[name], x, epoch)
                losses[name] = float(m["loss"])  # float() waits for JAX's async result
            dt = time.perf_counter() - t0
            if epoch > 0:
                times[name].append(dt)
            print(
                f"epoch {epoch} {name:8s} {dt:6.2f} s  loss {losses[name]:.2f}"
                f"{'  (warm-up)' if epoch == 0 else ''}",
                flush=True,
            )

    med = {k: median(v) for k, v in times.items()}
    write_result(
        "vae_speed",
        {
            "torch_s_per_epoch": med["torch"],
            "pyro_s_per_epoch": med["pyro"],
            "numpyro_s_per_epoch": med["numpyro"],
            "pyro_vs_torch": med["pyro"] / med["torch"],
            "numpyro_vs_torch": med["numpyro"] / med["torch"],
            "timed_epochs": args.epochs,
            "wall_minutes": clock.minutes(),
            "n_train": n,
            "final_loss": losses,
            "setting": f"z={LATENT}, hidden={HIDDEN} softplus, batch={BATCH}, Adam({LR}), "
            "Bernoulli, 1-particle MC ELBO; torch reference and ppgen-pyro both use fused Adam",
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
