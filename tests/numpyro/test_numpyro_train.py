"""Trainer: learning, exact resume from checkpoint arrays, user programs, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.numpyro import (
    ELBO,
    IWAE,
    DynamicBinarization,
    Trainer,
    log_marginal_likelihood,
)
from ppgen.models.numpyro import VAE

X_DIM = 16


@pytest.fixture(scope="module")
def data():
    """Noisy copies of three binary prototypes: structure a tiny VAE can learn quickly."""
    rng = np.random.default_rng(0)
    protos = rng.random((3, X_DIM)) < 0.5
    x = protos[rng.integers(0, 3, 240)] ^ (rng.random((240, X_DIM)) < 0.05)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def shared(data):
    """One model and trainer for the tests that need no special options (compiled once)."""
    vae = _vae()
    return vae, _trainer(vae)


def _trainer(vae, objective=None, **kwargs):
    kwargs = {"batch_size": 40, "num_data": 240, "lr": 1e-2, **kwargs}
    return Trainer(vae.model, vae.guide, objective or ELBO(), **kwargs)


def _vae(hidden=(8,)):
    return VAE(X_DIM, latent=2, hidden=hidden)


def test_training_decreases_the_loss_and_improves_the_bound(data, shared):
    _, trainer = shared
    state = trainer.init(0, data[:40])
    before = trainer.evaluate(state, data)["elbo"]
    losses = []
    for epoch in range(6):
        state, metrics = trainer.train_epoch(state, data, epoch)
        assert metrics["finite"] == 1.0
        losses.append(metrics["loss"])
    assert losses[-1] < losses[0] - 1.0  # nats per example; the first epoch starts ~11
    assert trainer.evaluate(state, data)["elbo"] > before + 1.0
    assert int(state.step) == 6 * (240 // 40) and int(state.epoch) == 6


@pytest.mark.parametrize(
    "options, new_trainer",
    [
        (
            {
                "transform": DynamicBinarization(),
                "clip_norm": 5.0,
                "lr_schedule": "cosine",
                "total_steps": 12,
                "beta_schedule": lambda t: min(1.0, t / 10),
            },
            True,
        ),
        ({"objective": IWAE(num_particles=3), "num_data": None}, False),
    ],
    ids=["elbo-binarize-clip-cosine-annealing", "iwae"],
)
def test_resume_from_state_arrays_equals_uninterrupted(data, options, new_trainer):
    options = dict(options)
    objective = options.pop("objective", None)
    trainer = _trainer(_vae(), objective, **options)
    state, _ = trainer.train_epoch(trainer.init(3, data[:40]), data, 0)
    arrays, meta = trainer.state_arrays(state)  # the checkpoint after epoch 0
    assert meta["step"] == 6 and meta["epoch"] == 1 and meta["seed"] == 3
    state, _ = trainer.train_epoch(state, data, 1)
    uninterrupted = trainer.state_arrays(state)[0]

    if new_trainer:  # as a new process would build it (else: the same, compiled once)
        trainer = _trainer(_vae(), objective, **options)
    loaded = trainer.load_state_arrays(trainer.init(11, data[:7]), arrays, meta)
    for key, value in trainer.state_arrays(loaded)[0].items():  # the round trip is exact
        np.testing.assert_array_equal(value, arrays[key], err_msg=key)
        assert value.dtype == arrays[key].dtype, key
    resumed = trainer.state_arrays(trainer.train_epoch(loaded, data, 1)[0])[0]

    assert set(uninterrupted) == set(resumed)
    for key in uninterrupted:
        np.testing.assert_array_equal(uninterrupted[key], resumed[key], err_msg=key)


def test_an_epoch_of_jitted_steps_equals_the_scanned_epoch(data, float64):
    """epoch_loop="steps" runs the scan's body once per batch: same keys, rows, noise,
    schedules and annealing, so the same parameters, losses and bound (float64; the bound
    over 230 rows: 5 full batches and a remainder)."""
    options = {
        "transform": DynamicBinarization(),
        "lr_schedule": "cosine",
        "total_steps": 12,
        "beta_schedule": lambda t: min(1.0, t / 10),
    }
    results = []
    for loop in ("scan", "steps"):
        trainer = _trainer(_vae(), epoch_loop=loop, **options)
        state = trainer.init(5, data[:40])
        metrics = []
        for epoch in range(2):
            state, m = trainer.train_epoch(state, data, epoch)
            metrics.append(m)
        metrics.append(trainer.evaluate_bound(state, data[:230], objective=IWAE(3)))
        results.append((trainer.state_arrays(state), metrics))
    (scan, scan_meta), scan_metrics = results[0]
    (steps, steps_meta), steps_metrics = results[1]
    assert scan_meta == steps_meta and set(scan) == set(steps)
    for key in scan:
        np.testing.assert_allclose(steps[key], scan[key], rtol=1e-9, atol=1e-12, err_msg=key)
    for a, b in zip(scan_metrics, steps_metrics, strict=True):
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in b], [a[k] for k in a], rtol=1e-9)
    assert not np.allclose(scan[next(iter(scan))], 0)  # it trained


def test_checkpoint_of_another_model_is_rejected(data, shared):
    small, big = shared[1], _trainer(_vae((9,)))
    arrays, meta = big.state_arrays(big.init(0, data[:40]))
    template = small.init(0, data[:40])
    with pytest.raises(CheckpointError, match="another model"):
        small.load_state_arrays(template, arrays, meta)
    own, own_meta = small.state_arrays(template)
    del own[next(iter(own))]
    with pytest.raises(CheckpointError, match="missing"):
        small.load_state_arrays(template, own, own_meta)


def test_bad_options_are_config_errors():
    vae = _vae()
    with pytest.raises(ConfigError, match="lr_schedule"):
        _trainer(vae, lr_schedule="warm-restarts")
    with pytest.raises(ConfigError, match="total_steps"):
        _trainer(vae, lr_schedule="cosine")
    with pytest.raises(ConfigError, match="beta"):
        _trainer(vae, IWAE(), beta_schedule=lambda t: 1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        _trainer(vae, batch_size=0)
    with pytest.raises(ConfigError, match="epoch_loop must be one of 'scan', 'steps'"):
        _trainer(vae, epoch_loop="unrolled")


def test_bad_data_is_a_data_error(data, shared):
    trainer = shared[1]
    with pytest.raises(DataError, match=rf"\(batch, {X_DIM}\)"):
        trainer.init(0, data[:40, :-1])
    state = trainer.init(0, data[:40])
    with pytest.raises(DataError, match=rf"\(batch, {X_DIM}\)"):
        trainer.train_epoch(state, data[:, :-1], 0)
    bad = data.copy()
    bad[5, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        trainer.train_epoch(state, bad, 0)
    with pytest.raises(DataError, match="NaN"):
        trainer.evaluate(state, bad)
    with pytest.raises(DataError, match="at least 40 rows"):
        trainer.train_epoch(state, data[:30], 0)


def test_grey_data_for_a_bernoulli_vae_is_refused_at_init_unless_binarized(data):
    """Inside the compiled epoch a grey value scores -inf (NumPyro validates the support),
    which would read as divergence; ``init`` sees concrete rows and names the fix."""
    grey = np.where(data > 0, 0.9, 0.1).astype(np.float32)
    with pytest.raises(DataError, match="binary x .*DynamicBinarization"):
        _trainer(_vae()).init(0, grey[:40])
    trainer = _trainer(_vae(), transform=DynamicBinarization())
    state, metrics = trainer.train_epoch(trainer.init(0, grey[:40]), grey, 0)
    assert metrics["finite"] == 1.0
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        trainer.init(0, grey[:40] * 2)


def test_step_and_params(data, shared):
    vae, trainer = shared
    state = trainer.init(0, data[:40])
    new, metrics = trainer.step(state, data[:40])
    assert np.isfinite(metrics["loss"]) and int(new.step) == 1
    params = trainer.params(new)
    assert set(params) == {"encoder$params", "decoder$params"}
    bound = vae.bind(params)
    moved = (
        bound.get_weights()["encoder.layers.0.weight"]
        - vae.get_weights()["encoder.layers.0.weight"]
    )
    assert np.abs(moved).max() > 0  # one Adam step moves every weight by ~lr


def test_a_nan_loss_is_reported_not_raised(data):
    def model(x, num_data=None):
        log_scale = numpyro.param("log_scale", jnp.zeros(()))
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0))
            scale = jnp.exp(log_scale)  # overflows to inf (or 0) after one huge step
            numpyro.sample("x", dist.Normal(z[..., None], scale).to_event(1), obs=x)

    def guide(x, num_data=None):
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            numpyro.sample("z", dist.Normal(0.0, 1.0))

    trainer = Trainer(model, guide, ELBO(), batch_size=40, lr=1e30)
    state, metrics = trainer.train_epoch(trainer.init(0, data[:40]), data, 0)
    assert metrics["finite"] == 0.0 and not np.isfinite(metrics["loss"])


def _user_model(x, num_data=None):
    """x_i = mu + z_i + noise: log p(x_i) = log N(x_i; mu, 1 + sigma^2) in closed form."""
    mu = numpyro.param("mu", jnp.zeros(()))
    sigma = numpyro.param("sigma", jnp.ones(()), constraint=constraints.positive)
    with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0))
        numpyro.sample("x", dist.Normal(mu + z, sigma), obs=x[:, 0])


def _user_guide(x, num_data=None):
    a, c = numpyro.param("a", jnp.zeros(())), numpyro.param("c", jnp.zeros(()))
    s = numpyro.param("s", jnp.ones(()), constraint=constraints.positive)
    with numpyro.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
        numpyro.sample("z", dist.Normal(a * x[:, 0] + c, s))  # holds the exact posterior


def test_a_user_written_program_trains_and_has_a_log_likelihood():
    rng = np.random.default_rng(1)
    x = (2.0 + rng.normal(size=400) + 0.5 * rng.normal(size=400))[:, None].astype(np.float32)
    trainer = Trainer(
        _user_model, _user_guide, ELBO(num_particles=4), lr=0.05, batch_size=50, num_data=400
    )
    state = trainer.init(0, x[:50])
    first = None
    for epoch in range(30):
        state, metrics = trainer.train_epoch(state, x, epoch)
        first = first or metrics["loss"]
    assert metrics["loss"] < first
    params = trainer.params(state)
    assert float(params["sigma"]) > 0 and float(params["s"]) > 0  # constrained sites
    np.testing.assert_allclose(float(params["mu"]), x.mean(), atol=0.05)  # ML estimate

    def fixed(fn):
        return numpyro.handlers.substitute(fn, data=params)

    xb = jnp.asarray(x[:20])
    est = log_marginal_likelihood(
        jax.random.PRNGKey(0), fixed(_user_model), fixed(_user_guide), xb, num_samples=2000
    )
    exact = dist.Normal(params["mu"], jnp.sqrt(1 + params["sigma"] ** 2)).log_prob(xb[:, 0])
    # The learned affine guide is close to the exact (affine, Gaussian) posterior.
    np.testing.assert_allclose(est, exact, atol=0.02)
