"""A two-player game with a known fixed point, on both backends (used by test_two_player.py,
also from a subprocess that is killed mid-run).

Data ``x ~ N(MU, 1)``. The generator is a model program: ``x_gen = g + z``, ``z ~ N(0, 1)``
per example, with its parameter ``g`` (site ``generator_g``). The critic is the objective's
own parameter ``h`` (site ``critic_h``), a linear critic ``f_h(x) = h x`` with an L2 penalty
(a Wasserstein GAN with a quadratic critic regulariser):

    critic:     minimise  -(mean f_h(x) - mean f_h(x_gen)) + LAM / 2 h^2
    generator:  minimise  -mean f_h(x_gen)

The critic's best response is ``h = (mean x - g) / LAM``; the only fixed point of the game
is ``g = mean x``, ``h = 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import torch
from numpyro import handlers
from pyro import poutine

MU, LAM = 2.0, 1.0


def data(n: int = 400, seed: int = 0) -> np.ndarray:
    return (MU + np.random.default_rng(seed).normal(size=(n, 1))).astype(np.float32)


def groups(optim):
    """The players' groups: the critic first (twice per step), then the generator."""
    return [
        optim.Group("critic", params="critic*", optimizer="sgd", lr=0.1, updates=2),
        optim.Group(
            "generator", params="generator*", lr=0.05, lr_schedule="cosine", total_steps=400
        ),
    ]


# -- Pyro -------------------------------------------------------------------------------------


def pyro_model(x, num_data=None):
    g = pyro.param("generator_g", torch.zeros((), dtype=x.dtype))
    with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
        z = pyro.sample("z", pdist.Normal(torch.zeros(len(x), dtype=x.dtype), 1.0))
        pyro.deterministic("x_gen", g + z)


def pyro_guide(x, num_data=None):
    pass


def pyro_game(model, guide, x, num_data=None):
    x_gen = poutine.trace(model).get_trace(x, num_data).nodes["x_gen"]["value"]
    h = pyro.param("critic_h", torch.zeros((), dtype=x.dtype))
    x = x[:, 0]
    critic = -(h * x.mean() - h * x_gen.mean()) + LAM / 2 * h**2
    return {"critic": critic, "generator": -(h * x_gen).mean()}


def pyro_trainer(**kwargs):
    from ppgen.inference import optim
    from ppgen.inference.pyro import Trainer

    pyro.clear_param_store()
    return Trainer(pyro_model, pyro_guide, pyro_game, groups=groups(optim), batch_size=40, **kwargs)


# -- NumPyro ----------------------------------------------------------------------------------


def numpyro_model(x, num_data=None):
    g = numpyro.param("generator_g", 0.0)
    with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
        z = numpyro.sample("z", ndist.Normal(jnp.zeros(len(x)), 1.0))
        numpyro.deterministic("x_gen", g + z)


def numpyro_guide(x, num_data=None):
    pass


def numpyro_game(rng_key, model, guide, x, num_data=None):
    trace = handlers.trace(handlers.seed(model, rng_key)).get_trace(x, num_data)
    x_gen = trace["x_gen"]["value"]
    h = numpyro.param("critic_h", 0.0)
    x = x[:, 0]
    critic = -(h * x.mean() - h * x_gen.mean()) + LAM / 2 * h**2
    return {"critic": critic, "generator": -(h * x_gen).mean()}


def numpyro_trainer(**kwargs):
    from ppgen.inference import optim
    from ppgen.inference.numpyro import Trainer

    return Trainer(
        numpyro_model, numpyro_guide, numpyro_game, groups=groups(optim), batch_size=40, **kwargs
    )


TRAINERS = {"pyro": pyro_trainer, "numpyro": numpyro_trainer}


def params(backend: str, trainer, state) -> dict[str, float]:
    """The players' parameters as floats."""
    return {k: float(np.asarray(v)) for k, v in trainer.params(state).items()}


def run(backend: str, run_dir: str, epochs: int, resume: bool = False, kill_after=None) -> None:
    """Train with the driver (what the kill -9 test runs in a subprocess)."""
    import os
    import signal

    from ppgen.driver import fit

    if backend == "numpyro":
        jax.config.update("jax_enable_x64", True)
    else:
        torch.set_default_dtype(torch.float64)

    def die(record):
        if kill_after is not None and record["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    trainer = TRAINERS[backend]()
    fit(trainer, data(), run_dir=run_dir, epochs=epochs, seed=5, resume=resume,
        progress=False, on_epoch=die)  # fmt: skip


if __name__ == "__main__":
    import sys

    backend, run_dir, epochs, resume, kill_after = sys.argv[1:6]
    run(
        backend, run_dir, int(epochs), resume == "1", None if kill_after == "-" else int(kill_after)
    )
