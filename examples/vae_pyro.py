"""A variational autoencoder on binarized MNIST with ppgen's Pyro backend, written the way
Pyro's own VAE example is: a model/guide pair, an objective, a trainer, a loop.

The model/guide pair is ``ppgen.models.pyro.VAE`` (Kingma & Welling 2014; swap in your own
``model(x, num_data=None)``/``guide`` to fit something else); ``Trainer`` fits it by the
ELBO on dynamically binarized minibatches and ``fit`` adds what a long run needs
(validation, checkpoints, exact resume, early stopping). At the end it reports the test ELBO
and an importance-sampled test log-likelihood, and writes a grid of samples. Without the
MNIST files (offline) it uses scikit-learn's 8x8 digits.

    python examples/vae_pyro.py [--epochs 10] [--out runs/vae_pyro]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ppgen import plots
from ppgen.data import load_dataset
from ppgen.driver import fit
from ppgen.errors import DataError
from ppgen.inference.pyro import ELBO, DynamicBinarization, Trainer, evaluate_log_likelihood
from ppgen.inference.pyro.interop import seeded
from ppgen.models.pyro import VAE


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--k", type=int, default=100, help="importance samples for log p(x)")
    parser.add_argument("--dataset", choices=["mnist", "digits"], default="mnist")
    parser.add_argument("--out", type=Path, default=Path("runs/vae_pyro"))
    args = parser.parse_args(argv)

    dataset = args.dataset
    try:
        train = load_dataset(dataset, "train")  # grey values: binarized afresh every step
    except DataError as e:
        print(f"{dataset} is not available ({e}); using scikit-learn's 8x8 digits.")
        dataset, train = "digits", load_dataset("digits", "train")
    # Validation and test images are binarized once (seed 0), so every run sees the same.
    valid_x = load_dataset(dataset, "valid", binarize="static").x
    test = load_dataset(dataset, "test", binarize="static")
    test_x = test.x

    vae = VAE(train.x.shape[1], latent=args.latent, hidden=(200, 200))
    trainer = Trainer(
        vae.model,
        vae.guide,
        ELBO(),
        lr=1e-3,
        batch_size=100,
        num_data=len(train.x),  # the ELBO of the whole training set, per example in the logs
        transform=DynamicBinarization(),
    )
    result = fit(trainer, train.x, valid_x, run_dir=args.out, epochs=args.epochs, progress=True)
    vae.bind(trainer.params(result.state))  # the trained weights, in place

    elbo = trainer.evaluate(result.state, test_x)["elbo"]
    with seeded(0):
        log_px = evaluate_log_likelihood(vae.model, vae.guide, test_x, num_samples=args.k)
    with seeded(0), torch.no_grad():
        samples = vae.sample(64).numpy()
    path = plots.save_image_grid(samples, args.out / "samples.png", test.image_shape)
    out = {"test_elbo": elbo, "test_log_px": float(np.mean(log_px)), "epochs": args.epochs}
    print(f"test ELBO {elbo:.2f} nats, log p(x) >= {out['test_log_px']:.2f} (k={args.k})")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
