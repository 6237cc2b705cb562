"""A user's own Pyro program (not ppgen's classes) trains and is evaluated like ours."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppgen.inference.pyro import ELBO, Trainer, log_marginal_likelihood


@pytest.fixture
def clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def test_user_model_with_constrained_param_and_pyro_module(clean_param_store):
    """Plain Pyro code, not ppgen's classes: a global pyro.param and a pyro.module."""
    with torch.random.fork_rng():  # the same initial weights whatever ran before
        torch.manual_seed(0)
        decoder = torch.nn.Linear(1, 2)

    def model(x, num_data=None):
        pyro.module("decoder", decoder)
        noise = pyro.param("noise", torch.tensor(2.0), constraint=dist.constraints.positive)
        with pyro.plate("data", num_data or len(x), subsample_size=len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(decoder(z), noise).to_event(1), obs=x)

    def guide(x, num_data=None):
        loc = pyro.param("loc", torch.zeros(2))
        scale = pyro.param("scale", torch.tensor(1.0), constraint=dist.constraints.positive)
        with pyro.plate("data", num_data or len(x), subsample_size=len(x)):
            pyro.sample("z", dist.Normal(x @ loc[:, None], scale).to_event(1))

    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 1))
    x = (np.hstack([2 * z, -z]) + 0.1 * rng.normal(size=(200, 2))).astype(np.float32)
    trainer = Trainer(model, guide, ELBO(), lr=0.05, batch_size=50, num_data=200)
    state = trainer.init(0, x[:50])
    assert set(state.params) == {"decoder$$$weight", "decoder$$$bias", "noise", "loc", "scale"}
    losses = []
    for epoch in range(15):
        state, metrics = trainer.train_epoch(state, x, epoch)
        losses.append(metrics["loss"])
    params = trainer.params(state)
    assert losses[-1] < losses[0] - 0.5
    assert 0 < params["noise"] < 2.0  # constrained value, and it learned
    assert params["noise"] == pytest.approx(pyro.param("noise").item())
    # Checkpoints restore the param store's tensors in place.
    arrays, meta = trainer.state_arrays(state)
    trained, _ = trainer.train_epoch(state, x, 15)
    restored = trainer.load_state_arrays(trained, arrays, meta)
    assert pyro.param("noise").item() == pytest.approx(params["noise"].item(), rel=0, abs=0)
    assert restored.step == state.step
    lml = log_marginal_likelihood(model, guide, torch.from_numpy(x[:10]), num_samples=200)
    assert lml.shape == (10,) and torch.isfinite(lml).all()
