"""Trainer: learning, exact resume, checkpoints of another model, input errors, RNG hygiene."""

import json
import math

import numpy as np
import pytest
import torch

from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.pyro import ELBO, IWAE, DynamicBinarization, Trainer
from ppgen.models.pyro import VAE

X_DIM = 16


def binary_data(n=96, seed=0):
    """Two noisy prototypes: structure a tiny VAE can learn within a few epochs."""
    rng = np.random.default_rng(seed)
    protos = rng.random((2, X_DIM)) < 0.5
    x = protos[rng.integers(0, 2, n)] ^ (rng.random((n, X_DIM)) < 0.05)
    return x.astype(np.float32)


def setup(seed=0, hidden=(12,), objective=None, **kwargs):
    vae = VAE(X_DIM, latent=2, hidden=hidden, seed=seed)
    kwargs = {"lr": 1e-2, "batch_size": 16, "num_data": 96, **kwargs}
    trainer = Trainer(vae.model, vae.guide, objective or ELBO(), **kwargs)
    return vae, trainer


@pytest.mark.parametrize("objective", [ELBO(), ELBO(analytic_kl=True), IWAE(num_particles=3)])
def test_a_few_epochs_decrease_the_loss(objective):
    x = binary_data()
    vae, trainer = setup(objective=objective)
    state = trainer.init(0, x[:16])
    first = trainer.evaluate(state, x)["elbo"]
    losses = []
    for epoch in range(6):
        state, metrics = trainer.train_epoch(state, x, epoch)
        losses.append(metrics["loss"])
    assert state.step == 6 * 6 and state.epoch == 6
    assert losses[-1] < losses[0]
    assert trainer.evaluate(state, x)["elbo"] > first


def params_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"transform": DynamicBinarization(), "lr_schedule": "cosine", "total_steps": 20}],
    ids=["plain", "binarized-cosine"],
)
def test_resume_is_bit_exact(kwargs):
    x = binary_data()
    if kwargs.get("transform"):
        x = np.random.default_rng(1).random((96, X_DIM)).astype(np.float32)  # grey levels
    vae, trainer = setup(**kwargs)
    state = trainer.init(7, x[:16])
    state, _ = trainer.train_epoch(state, x, 0)
    arrays, meta = trainer.state_arrays(state)
    meta = json.loads(json.dumps(meta))  # what a checkpoint file holds
    state, uninterrupted = trainer.train_epoch(state, x, 1)

    fresh_vae, fresh_trainer = setup(**kwargs)  # a new process, in effect
    resumed = fresh_trainer.init(123, x[:16])  # the checkpoint's seed wins
    resumed = fresh_trainer.load_state_arrays(resumed, arrays, meta)
    assert resumed.step == 6 and resumed.epoch == 1 and resumed.seed == 7
    again, _ = fresh_trainer.state_arrays(resumed)
    assert arrays.keys() == again.keys()
    assert all(np.array_equal(arrays[k], again[k]) for k in arrays)  # exact round trip
    resumed, metrics = fresh_trainer.train_epoch(resumed, x, 1)
    assert metrics == uninterrupted
    assert params_equal(trainer.params(state), fresh_trainer.params(resumed))
    assert params_equal(
        {k: torch.from_numpy(v) for k, v in vae.get_weights().items()},
        {k: torch.from_numpy(v) for k, v in fresh_vae.get_weights().items()},
    )


def test_two_models_do_not_share_parameters():
    x = binary_data()
    a, trainer_a = setup()
    b, trainer_b = setup()
    state_a, state_b = trainer_a.init(0, x[:16]), trainer_b.init(0, x[:16])
    assert {id(p) for p in state_a.params.values()} == {id(p) for p in a.parameters()}
    assert {id(p) for p in state_b.params.values()} == {id(p) for p in b.parameters()}
    before = b.get_weights()
    trainer_a.train_epoch(state_a, x, 0)
    assert all(np.array_equal(before[k], v) for k, v in b.get_weights().items())
    assert not np.array_equal(
        before["encoder.layers.0.weight"], a.get_weights()["encoder.layers.0.weight"]
    )


def test_checkpoint_of_another_model_is_refused():
    x = binary_data()
    _, small = setup(hidden=(12,))
    _, large = setup(hidden=(13,))
    arrays, meta = small.state_arrays(small.init(0, x[:16]))
    state = large.init(0, x[:16])
    with pytest.raises(CheckpointError, match="another model"):
        large.load_state_arrays(state, arrays, meta)
    state = small.init(0, x[:16])
    with pytest.raises(CheckpointError, match="numpyro"):
        small.load_state_arrays(state, arrays, {**meta, "backend": "numpyro"})
    del arrays["rng_state"]
    with pytest.raises(CheckpointError, match="rng_state"):
        small.load_state_arrays(state, arrays, meta)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr_schedule": "linear"},
        {"lr_schedule": "cosine"},  # needs total_steps
        {"lr": 0.0},
        {"batch_size": 0},
        {"clip_norm": -1.0},
        {"num_data": 8},  # fewer than a batch
    ],
)
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        setup(**kwargs)


def test_bad_seed():
    _, trainer = setup()
    for seed in (-1, 2**32, 1.5):
        with pytest.raises(ConfigError, match="seed"):
            trainer.init(seed, binary_data()[:16])


def test_bad_data():
    x = binary_data()
    _, trainer = setup()
    state = trainer.init(0, x[:16])
    nan = x.copy()
    nan[5, 3] = np.nan
    for bad in (x[:, :-1], nan, x[0], x[:8]):
        with pytest.raises(DataError):
            trainer.train_epoch(state, bad, 0)
    with pytest.raises(DataError):
        trainer.step(state, x[:16, :-1])
    with pytest.raises(DataError):
        setup(transform=DynamicBinarization())[1].train_epoch(state, 2 * x, 0)


def test_divergence_stops_the_epoch_before_stepping():
    x = binary_data()
    vae, _ = setup()
    calls = []

    def blows_up_on_third_step(model, guide, *args, **kwargs):
        calls.append(1)
        loss = ELBO()(model, guide, *args, **kwargs)
        return loss * math.nan if len(calls) == 3 else loss

    trainer = Trainer(vae.model, vae.guide, blows_up_on_third_step, batch_size=16)
    state = trainer.init(0, x[:16])
    calls.clear()  # init ran the objective once to find the parameters
    state, metrics = trainer.train_epoch(state, x, 0)
    assert math.isnan(metrics["loss"]) and metrics["finite"] == 0.0 and len(calls) == 3
    assert state.step == 2 and state.epoch == 0
    assert all(torch.isfinite(p).all() for p in vae.parameters())


def test_schedules_and_per_step_objective_kwargs():
    x = binary_data()
    for schedule, final in (("cosine", 0.0), ("exponential", 0.1), ("constant", 1.0)):
        _, trainer = setup(lr_schedule=schedule, total_steps=6, lr=1e-2)
        state = trainer.init(0, x[:16])
        state, _ = trainer.train_epoch(state, x, 0)
        lr = state.optimizers["loss"].param_groups[0]["lr"]
        assert lr == pytest.approx(1e-2 * final, abs=1e-12)
    seen = []

    def recording_elbo(model, guide, *args, beta=None, **kwargs):
        seen.append(beta)
        return ELBO()(model, guide, *args, beta=beta, **kwargs)

    vae, _ = setup()
    anneal = Trainer(
        vae.model, vae.guide, recording_elbo, batch_size=16, beta_schedule=lambda s: s / 10
    )
    state = anneal.init(0, x[:16])
    seen.clear()  # init ran the objective once to find the parameters
    state, m0 = anneal.step(state, x[:16])
    state, m1 = anneal.train_epoch(state, x, 0)  # KL annealing: beta = step / 10
    assert seen == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert state.step == 7 and math.isfinite(m0["loss"])
    assert m1["finite"] == 1.0 and m1["lr"] == 1e-3
    with pytest.raises(ConfigError, match="beta"):
        Trainer(vae.model, vae.guide, IWAE(), beta_schedule=lambda s: 1.0)


def test_global_rng_untouched_and_evaluate_is_side_effect_free():
    x = binary_data()
    outer = torch.get_rng_state()
    runs = []
    for evaluate in (False, True):
        vae, trainer = setup()
        state = trainer.init(0, x[:16])
        for epoch in range(2):
            state, _ = trainer.train_epoch(state, x, epoch)
            if evaluate:
                e1, e2 = trainer.evaluate(state, x), trainer.evaluate(state, x)
                assert e1 == e2  # its own (seed, step)-derived noise
        runs.append(trainer.params(state))
    assert params_equal(*runs)
    assert torch.equal(torch.get_rng_state(), outer)
