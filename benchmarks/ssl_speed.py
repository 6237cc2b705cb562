"""Seconds per epoch of M2 (Kingma et al. 2014) in ppgen-numpyro, ppgen-pyro and plain Pyro.

Setting: 50,000 MNIST training images (statically binarized once) of which 3,000 are
labelled (300 per class), batch 200 unlabelled + 200 labelled per step, so one epoch is
235 steps over the 47,000 unlabelled images with the labelled set cycled. One hidden layer
of 500 softplus units in every network, z=50, exact parallel enumeration of the class of
every unlabelled image, the classification term on (alpha = 0.1 N), Adam(3e-4).

The reference is the same model written directly in Pyro as its SS-VAE tutorial does
(``pyro.module`` networks, ``config_enumerate`` guide, ``TraceEnum_ELBO`` for labelled and
unlabelled batches, the classification term as a model/guide pair under ``poutine.scale``)
with one ``SVI`` step per batch pair on the sum of the three losses and ``pyro.optim.Adam``.
All three run in one process with their epochs interleaved; after one warm-up epoch each
(JAX compiles in it) the median of ``--epochs`` epochs is compared.

    python benchmarks/ssl_speed.py --epochs 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Stopwatch, hardware, median, parse, write_result  # noqa: E402

from ppgen import data as ppdata  # noqa: E402

LATENT, HIDDEN, BATCH, LR, LABELS, CLASSES = 50, 500, 200, 3e-4, 3000, 10


def _mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.Softplus(), nn.Linear(HIDDEN, n_out))


def _cat(a: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y_hot = nn.functional.one_hot(y, CLASSES).to(a.dtype)
    shape = torch.broadcast_shapes(a.shape[:-1], y_hot.shape[:-1])
    return torch.cat([a.expand(*shape, -1), y_hot.expand(*shape, -1)], dim=-1)


class PyroSSVAE(nn.Module):
    """The reference: M2 written directly in Pyro, as in Pyro's SS-VAE tutorial."""

    def __init__(self, x_dim: int, num_labelled: int, num_unlabelled: int) -> None:
        super().__init__()
        self.classifier = _mlp(x_dim, CLASSES)
        self.encoder = _mlp(x_dim + CLASSES, 2 * LATENT)
        self.decoder = _mlp(LATENT + CLASSES, x_dim)
        self.sizes = {True: num_labelled, False: num_unlabelled}
        self.alpha = 0.1 * (num_labelled + num_unlabelled) / num_labelled

    def model(self, x, y=None):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", self.sizes[y is not None], subsample=torch.arange(len(x))):
            y = pyro.sample("y", dist.Categorical(logits=torch.zeros(CLASSES)), obs=y)
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT), torch.ones(LATENT)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(_cat(z, y))).to_event(1), obs=x)

    def guide(self, x, y=None):
        pyro.module("encoder", self.encoder)
        pyro.module("classifier", self.classifier)
        with pyro.plate("data", self.sizes[y is not None], subsample=torch.arange(len(x))):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)))
            loc, pre = self.encoder(_cat(x, y)).chunk(2, dim=-1)
            scale = nn.functional.softplus(pre) + 1e-4
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def model_classify(self, x, y):
        pyro.module("classifier", self.classifier)
        with pyro.plate("data", self.sizes[True], subsample=torch.arange(len(x))):
            with poutine.scale(scale=self.alpha):
                pyro.sample("y_aux", dist.Categorical(logits=self.classifier(x)), obs=y)

    def guide_classify(self, x, y):
        pass


def pyro_direct_setup(x_dim: int, num_labelled: int, num_unlabelled: int):
    pyro.clear_param_store()
    net = PyroSSVAE(x_dim, num_labelled, num_unlabelled)
    enum_elbo = TraceEnum_ELBO(max_plate_nesting=1)
    aux_elbo = Trace_ELBO()
    guide = config_enumerate(net.guide, "parallel", expand=True)

    def loss(model, guide_, x_l, y_l, x_u):
        return (
            enum_elbo.differentiable_loss(net.model, guide, x_l, y_l)
            + enum_elbo.differentiable_loss(net.model, guide, x_u)
            + aux_elbo.differentiable_loss(net.model_classify, net.guide_classify, x_l, y_l)
        )

    return SVI(net.model, guide, pyro.optim.Adam({"lr": LR}), loss=loss)


def pyro_direct_epoch(svi, x, y, lab, unl) -> float:
    total = 0.0
    for rows_l, rows_u in zip(lab, unl, strict=True):
        total += svi.step(x[rows_l], y[rows_l], x[rows_u])
    return total / len(lab) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (after 1 warm-up)")
    parser.add_argument("--limit", type=int, default=None, help="use only N training examples")
    args = parse(parser)
    clock = Stopwatch()

    train = ppdata.load_mnist("train", binarize="static", seed=0)
    x, y_full = train.x[: args.limit], train.y[: args.limit]
    labels = min(LABELS, 10 * (len(x) // 50))
    y = ppdata.partial_labels(y_full, labels, seed=0)
    n_l = int(np.sum(y != ppdata.MISSING))
    n_u = len(y) - n_l
    x_dim = x.shape[1]
    from ppgen.inference import numpyro as inf_j
    from ppgen.inference import pyro as inf_t
    from ppgen.models import numpyro as mod_j
    from ppgen.models import pyro as mod_t

    kw = dict(latent=LATENT, hidden=(HIDDEN,), activation="softplus", seed=0)
    m_t, m_j = mod_t.SSVAE(x_dim, **kw), mod_j.SSVAE(x_dim, **kw)
    trainers = {
        name: inf.Trainer(
            m.model,
            m.guide,
            inf.SemiSupervisedELBO(),
            lr=LR,
            batch_size=BATCH,
            schedule=ppdata.LabelledBatches(CLASSES),
            evaluator=inf.ClassifierEvaluator(),
        )
        for name, inf, m in (("pyro", inf_t, m_t), ("numpyro", inf_j, m_j))
    }
    states = {k: t.init(0, (x, y)) for k, t in trainers.items()}
    torch.manual_seed(0)
    svi = pyro_direct_setup(x_dim, n_l, n_u)
    xt, yt = torch.from_numpy(x), torch.from_numpy(np.maximum(y, 0))

    times: dict[str, list[float]] = {"pyro_direct": [], "pyro": [], "numpyro": []}
    losses: dict[str, float] = {}
    for epoch in range(args.epochs + 1):
        for name in ("pyro_direct", "pyro", "numpyro"):
            t0 = time.perf_counter()
            if name == "pyro_direct":
                lab, unl = ppdata.semi_supervised_indices(
                    y, batch_size=BATCH, labelled_batch_size=BATCH, seed=0, epoch=epoch
                )
                lab, unl = torch.from_numpy(lab).long(), torch.from_numpy(unl).long()
                losses[name] = pyro_direct_epoch(svi, xt, yt, lab, unl)
            else:
                states[name], m = trainers[name].train_epoch(states[name], (x, y), epoch)
                losses[name] = float(m["loss"])  # float() waits for JAX's async result
            dt = time.perf_counter() - t0
            if epoch > 0:
                times[name].append(dt)
            print(
                f"epoch {epoch} {name:12s} {dt:7.2f} s  loss {losses[name]:.2f}"
                f"{'  (warm-up)' if epoch == 0 else ''}",
                flush=True,
            )

    med = {k: median(v) for k, v in times.items()}
    write_result(
        "ssl_speed",
        {
            "pyro_direct_s_per_epoch": med["pyro_direct"],
            "pyro_s_per_epoch": med["pyro"],
            "numpyro_s_per_epoch": med["numpyro"],
            "pyro_vs_pyro_direct": med["pyro"] / med["pyro_direct"],
            "numpyro_vs_pyro_direct": med["numpyro"] / med["pyro_direct"],
            "timed_epochs": args.epochs,
            "wall_minutes": clock.minutes(),
            "n_labelled": n_l,
            "n_unlabelled": n_u,
            "final_loss": losses,
            "setting": f"M2, z={LATENT}, one hidden layer of {HIDDEN} softplus, batch {BATCH} "
            f"unlabelled + {BATCH} labelled per step, Adam({LR}), parallel enumeration, "
            "classification term alpha = 0.1 N",
            "hardware": hardware(),
        },
    )


if __name__ == "__main__":
    main()
