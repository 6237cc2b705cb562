"""Bayesian inference over the latents of a trained VAE: NUTS against the amortized guide.

Trains a small VAE on the bundled 8x8 digits (or loads a run directory made by
``ppgen train``), then, with the decoder weights held fixed, samples p(z | x) for a few test
images with NUTS and compares it with the guide q(z | x): ArviZ diagnostics (r-hat, ESS),
per-dimension mean and standard-deviation gaps, and a scatter plot of both posteriors.

    python examples/mcmc_posterior.py [--run runs/vae] [--images 4] [--out runs/mcmc]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import jax
import numpy as np

from ppgen import plots, runs
from ppgen.inference.numpyro import compare_with_guide, mcmc_latents


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=None, help="a NumPyro VAE run directory")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30, help="when training a new VAE")
    parser.add_argument("--out", type=Path, default=Path("runs/mcmc"))
    args = parser.parse_args(argv)

    run_dir = args.run
    if run_dir is None:
        run_dir = args.out / "vae"
        config = runs.make_config(
            "vae",
            dataset="digits",
            latent=4,
            hidden=(64,),
            epochs=args.epochs,
            batch_size=50,
            backend="numpyro",
        )
        if not (run_dir / "checkpoints" / "LATEST").exists():
            runs.train(config, run_dir, progress=False)
    run = runs.load_trained(run_dir)
    if run.config.backend != "numpyro":
        raise SystemExit("this example uses the NumPyro backend; train with --backend numpyro")
    x = run.data.test_x[: args.images]
    vae = run.model  # holds the trained weights: NUTS sees them as constants

    key_mcmc, key_guide = jax.random.split(jax.random.PRNGKey(0))
    idata = mcmc_latents(
        key_mcmc, vae.model, x, num_warmup=args.samples, num_samples=args.samples, num_chains=2
    )
    print(az.summary(idata, kind="diagnostics").describe().loc[["min", "max"]])
    gap = compare_with_guide(key_guide, idata, vae.guide, x, num_samples=1000)
    print({k: round(v, 3) for k, v in gap.items()})

    exact = idata.posterior["z"].values.reshape(-1, *idata.posterior["z"].shape[2:])
    loc, scale = (np.asarray(a) for a in vae.encode(x))
    approx = loc + scale * np.random.default_rng(0).normal(size=(1000, *loc.shape))
    path = plots.save_posterior_comparison(exact, approx, args.out / "posterior.png")
    print(f"wrote {path}")
    return gap


if __name__ == "__main__":
    main()
