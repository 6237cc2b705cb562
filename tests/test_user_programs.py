"""The trainers on users' own programs: the right numbers, or a one-line refusal.

Each test states one thing on both backends (the ``backend`` fixture of conftest.py):
non-amortized guides get the rows they belong to, several observed arrays per datapoint
(a tuple or a dict) train and evaluate, data follow the model's dtype, and data edited in
place between epochs are checked again.
"""

import numpy as np
import pytest
import torch

from ppgen.errors import ConfigError, DataError

N = 200
NOISE = 0.3


@pytest.fixture(autouse=True)
def _fresh_param_store():
    """Pyro's param store is global: each test starts from its own initial values."""
    import pyro

    pyro.clear_param_store()


def _factor_data(seed=0):
    """``x_i = z_i w + noise``: one latent per row, a closed-form posterior given ``w``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(N, 1))
    return (z * [2.0, -1.0, 0.5] + NOISE * rng.normal(size=(N, 3))).astype(np.float32)


def _factor_model(b):
    def model(x, num_data=None):
        w = b.ppl.param("w", b.array([1.0, 0.0, 0.0]))
        size = x.shape[0]
        with b.ppl.plate("data", num_data or size, subsample_size=size):
            z = b.ppl.sample("z", b.dist.Normal(0.0, 1.0))
            b.ppl.sample("x", b.dist.Normal(z[..., None] * w, NOISE).to_event(1), obs=x)

    return model


def _auto_normal(b, model):
    if b.name == "pyro":
        from pyro.infer.autoguide import AutoNormal
    else:
        from numpyro.infer.autoguide import AutoNormal
    return AutoNormal(model)


def _posterior_corr(b, trainer, state, x):
    """Correlation of the guide's per-row means with the exact ``E[z_i | x_i, w]``."""
    params = {k: b.numpy(v) for k, v in trainer.params(state).items()}
    loc = params["AutoNormal.locs.z" if b.name == "pyro" else "z_auto_loc"]
    w = params["w"]
    exact = (x @ w / NOISE**2) / (1 + w @ w / NOISE**2)
    return np.corrcoef(loc, exact)[0, 1]


@pytest.mark.parametrize("batch_size, num_data", [(N, None), (50, N)])
def test_per_datapoint_guide_gets_its_rows(backend, batch_size, num_data):
    """An AutoNormal guide (one loc per row) trained by shuffled epochs learns each row's
    posterior: the rows reach the "data" plate (here the ELBO/row of ordered full-batch
    steps is about -2.70; with shuffled rows and no indices it was -27)."""
    b = backend
    x = _factor_data()
    model = _factor_model(b)
    trainer = b.inference.Trainer(
        model,
        _auto_normal(b, model),
        b.inference.ELBO(),
        lr=0.05,
        batch_size=batch_size,
        num_data=num_data,
    )
    state = trainer.init(0, x)
    for epoch in range(150 if batch_size == N else 40):
        state, _ = trainer.train_epoch(state, x, epoch)
    assert _posterior_corr(b, trainer, state, x) > 0.99
    # The bound of the learned guide lies below the exact log p(x) under the learned w
    # (x ~ N(0, w w^T + noise^2 I)) and near it: an ELBO above it is a wrong evaluation.
    w = b.numpy(trainer.params(state)["w"])
    cov = np.outer(w, w) + NOISE**2 * np.eye(3)
    _, logdet = np.linalg.slogdet(cov)
    mahalanobis = np.einsum("ni,ij,nj->n", x, np.linalg.inv(cov), x)
    exact = np.mean(-0.5 * (3 * np.log(2 * np.pi) + logdet + mahalanobis))
    elbo = trainer.evaluate(state, x)["elbo"]
    assert exact - 1.0 < elbo < exact + 0.05


def test_per_datapoint_guide_refused_when_rows_are_unknown(backend):
    """A plate whose size is the batch (no num_data) cannot say which rows a batch holds:
    refused in one line, at training and at evaluation on other data."""
    b = backend
    x = _factor_data()
    model = _factor_model(b)
    trainer = b.inference.Trainer(model, _auto_normal(b, model), b.inference.ELBO(), batch_size=50)
    state = trainer.init(0, x)
    with pytest.raises(ConfigError, match="one parameter per datapoint"):
        trainer.train_epoch(state, x, 0)
    with pytest.raises(ConfigError, match="one parameter per datapoint"):
        trainer.evaluate(state, x)


def _two_array_program(b):
    def model(x, s=None, num_data=None):
        loc = b.ppl.param("loc", b.array(np.zeros(3)))
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z = b.ppl.sample("z", b.dist.Normal(0.0, 1.0))
            b.ppl.sample("x", b.dist.Normal(z[..., None] + loc, 1.0).to_event(1), obs=x)
            b.ppl.sample("s", b.dist.Normal(z, 1.0), obs=s)

    def guide(x, s=None, num_data=None):
        m = b.ppl.param("m", b.array(0.0))
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            b.ppl.sample("z", b.dist.Normal(m + 0.5 * s, 1.0))

    return model, guide


def test_several_observed_arrays_as_tuple_or_dict(backend):
    """Two observed arrays per datapoint, ``(x, s)`` positionally or ``{"x", "s"}`` by
    keyword, batched alike: the same training and the same bound either way, and the
    bound is the exact ELBO of the trained guide (a conjugate model)."""
    b = backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    s = rng.normal(size=100).astype(np.float32)
    results = []
    for data in [(x, s), {"x": x, "s": s}]:
        if b.name == "pyro":
            import pyro

            pyro.clear_param_store()  # the second run starts from the same values
        model, guide = _two_array_program(b)
        trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=50)
        state = trainer.init(0, data)
        for epoch in range(2):
            state, metrics = trainer.train_epoch(state, data, epoch)
        state, step = trainer.step(state, data)
        results.append((metrics["loss"], step["loss"], trainer.evaluate(state, data)["elbo"]))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    assert all(np.isfinite(results[0]))


def test_one_value_per_example_is_refused_alone(backend):
    """A lone 1-D array is ambiguous (N scalars or one example): a one-line hint."""
    b = backend
    model, guide = _two_array_program(b)
    trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=10)
    with pytest.raises(DataError, match=r"x\[None\]"):
        trainer.init(0, np.zeros(100, np.float32))


def test_data_edited_in_place_are_checked_again(backend):
    """A trainer that cached (and, on NumPyro, copied to the device) its data notices
    values changed in place between epochs: NaN is refused, not trained on."""
    b = backend
    vae = b.models.VAE(8, latent=2, hidden=(4,))
    x = (np.random.default_rng(0).random((64, 8)) < 0.5).astype(np.float32)
    trainer = b.inference.Trainer(vae.model, vae.guide, b.inference.ELBO(), batch_size=16)
    state, _ = trainer.train_epoch(trainer.init(0, x), x, 0)
    x[3, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        trainer.train_epoch(state, x, 1)


def test_float64_pyro_model_gets_float64_data():
    """A ``.double()`` Pyro model trains and evaluates on data given as float32 or as
    numpy: the data follow the parameters' dtype, not torch's default."""
    from ppgen.inference.pyro import ELBO, Trainer
    from ppgen.models.pyro import VAE

    x = (np.random.default_rng(0).random((64, 16)) < 0.3).astype(np.float32)
    vae = VAE(16, latent=2, hidden=(8,)).double()
    trainer = Trainer(vae.model, vae.guide, ELBO(), batch_size=32)
    state = trainer.init(0, torch.as_tensor(x))
    assert all(p.dtype == torch.float64 for p in state.params.values())
    state, metrics = trainer.train_epoch(state, x, 0)
    assert np.isfinite(metrics["loss"])
    assert np.isfinite(trainer.evaluate(state, x)["elbo"])


def _bernoulli_program(b):
    def model(x, num_data=None):
        logits = b.ppl.param("logits", b.array(np.zeros(4)))
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z = b.ppl.sample("z", b.dist.Normal(0.0, 1.0))
            b.ppl.sample("x", b.dist.Bernoulli(logits=logits + z[..., None]).to_event(1), obs=x)

    def guide(x, num_data=None):
        loc = b.ppl.param("loc", b.array(0.0))
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            b.ppl.sample("z", b.dist.Normal(loc, 1.0))

    return model, guide


def test_values_outside_the_likelihood_support_are_named(backend):
    """Grey values under a user's Bernoulli likelihood: a one-line DataError naming the
    site and the value, at init and at evaluation (NumPyro's compiled bound was -inf
    without a word); binary training data with grey evaluation data is caught too."""
    b = backend
    model, guide = _bernoulli_program(b)
    rng = np.random.default_rng(0)
    grey = rng.random((64, 4)).astype(np.float32)
    binary = (grey < 0.5).astype(np.float32)
    trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=16)
    with pytest.raises(DataError, match=r"'x'.*Bernoulli.*binarize"):
        trainer.init(0, grey)
    state, _ = trainer.train_epoch(trainer.init(0, binary), binary, 0)
    with pytest.raises(DataError, match=r"'x'.*Bernoulli.*binarize"):
        trainer.evaluate(state, grey)


def _batch_only_program(b):
    """A decoder written for ``(batch, 2)`` only (it does not broadcast over particles)."""
    if b.name == "pyro":
        import pyro

        dec = torch.nn.Linear(2, 3)

        def decode(z):
            pyro.module("dec", dec)
            return dec(z.view(-1, 2))
    else:
        import equinox as eqx
        import jax
        from numpyro.contrib.module import eqx_module

        net = eqx.nn.Linear(2, 3, key=jax.random.PRNGKey(0))

        def decode(z):
            return jax.vmap(eqx_module("dec", net))(z)

    def model(x, num_data=None):
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            z = b.ppl.sample("z", b.dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            b.ppl.sample("x", b.dist.Normal(decode(z), 1.0).to_event(1), obs=x)

    def guide(x, num_data=None):
        loc = b.ppl.param("loc", b.array(np.zeros(2)))
        with b.ppl.plate("data", num_data or x.shape[0], subsample_size=x.shape[0]):
            b.ppl.sample("z", b.dist.Normal(loc, 1.0).to_event(1))

    return model, guide


def test_model_that_does_not_broadcast_gets_a_hint_at_init(backend):
    """A network written for ``(batch, L)`` only: one line at ``init`` saying the pair must
    broadcast over leading (particle) dimensions, not a backend shape error later."""
    b = backend
    model, guide = _batch_only_program(b)
    x = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=50)
    with pytest.raises(ConfigError, match="broadcast over leading dimensions"):
        trainer.init(0, x)


@pytest.mark.parametrize(
    "case",
    ["nan_with_binarization", "empty", "strings", "lr_inf"],
)
def test_bad_training_inputs_get_one_line(backend, case):
    """The API rows of the bad-input trial (NaN under dynamic binarization, an empty
    ``(0, D)`` array, a string array, ``lr=inf``): a ppgen error at once, not a backend
    error or a ZeroDivisionError later. (Data edited in place: see above.)"""
    b = backend
    noise = __import__(f"ppgen.inference.{b.name}.noise", fromlist=["DynamicBinarization"])
    vae = b.models.VAE(8, latent=2, hidden=(4,))
    x = (np.random.default_rng(0).random((64, 8)) < 0.5).astype(np.float32)
    if case == "lr_inf":
        with pytest.raises(ConfigError, match="lr must be finite"):
            b.inference.Trainer(vae.model, vae.guide, b.inference.ELBO(), lr=float("inf"))
        return
    transform = noise.DynamicBinarization() if case == "nan_with_binarization" else None
    trainer = b.inference.Trainer(
        vae.model, vae.guide, b.inference.ELBO(), batch_size=16, transform=transform
    )
    if case == "nan_with_binarization":
        data, match = x.copy(), "NaN"
        data[3, 2] = np.nan
    elif case == "empty":
        data, match = np.zeros((0, 8), np.float32), "no examples"
    else:
        data, match = x.astype(str), "not real numbers"
    with pytest.raises(DataError, match=match):
        trainer.init(0, data)
    with pytest.raises(DataError, match=match):
        trainer.train_epoch(trainer.init(0, x), data, 0)


def _log_likelihood(b, model, guide, x, **kwargs):
    if b.name == "pyro":
        torch.manual_seed(0)  # the same draws for the same call
        return b.inference.evaluate_log_likelihood(model, guide, x, **kwargs)
    import jax

    return b.inference.evaluate_log_likelihood(jax.random.PRNGKey(0), model, guide, x, **kwargs)


def test_estimator_takes_what_the_trainer_takes(backend):
    """``evaluate_log_likelihood`` on several arrays (tuple or dict, the same estimate),
    with one-line refusals: grey values under a Bernoulli (NumPyro gave -inf), and a
    per-datapoint guide evaluated in batches that cannot say which rows they hold."""
    b = backend
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    s = rng.normal(size=20).astype(np.float32)
    model, guide = _two_array_program(b)
    by_position = _log_likelihood(b, model, guide, (x, s), num_samples=50, batch_size=8)
    by_name = _log_likelihood(b, model, guide, {"x": x, "s": s}, num_samples=50, batch_size=8)
    assert by_position.shape == (20,) and np.all(np.isfinite(by_position))
    np.testing.assert_allclose(by_position, by_name, rtol=1e-5)

    model, guide = _bernoulli_program(b)
    grey = rng.random((8, 4)).astype(np.float32)
    with pytest.raises(DataError, match=r"'x'.*Bernoulli"):
        _log_likelihood(b, model, guide, grey, num_samples=10)

    x = _factor_data()
    model = _factor_model(b)
    guide = _auto_normal(b, model)
    trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=N)
    trainer.init(0, x)  # builds the guide's N per-row parameters
    with pytest.raises(ConfigError, match="one parameter per datapoint"):
        _log_likelihood(b, model, guide, x, num_samples=10, batch_size=50)
    if b.name == "pyro":  # NumPyro's autoguide reads its values from the trainer's state
        assert np.all(
            np.isfinite(_log_likelihood(b, model, guide, x, num_samples=10, batch_size=N))
        )


def test_float64_pyro_model_estimator():
    """``evaluate_log_likelihood`` of a ``.double()`` model on float32 data: the data
    follow the parameters' dtype."""
    from ppgen.inference.pyro import evaluate_log_likelihood
    from ppgen.models.pyro import VAE

    x = (np.random.default_rng(0).random((16, 16)) < 0.3).astype(np.float32)
    vae = VAE(16, latent=2, hidden=(8,)).double()
    assert np.all(np.isfinite(evaluate_log_likelihood(vae.model, vae.guide, x, num_samples=10)))


def test_joint_autoguide_refusal_names_the_guides_own_site(backend):
    """AutoDiagonalNormal samples one global vector outside the "data" plate: the refusal
    names that site (not the user's ``z``, which is inside it) and says what to use."""
    b = backend
    if b.name == "pyro":
        from pyro.infer.autoguide import AutoDiagonalNormal
    else:
        from numpyro.infer.autoguide import AutoDiagonalNormal
    model = _factor_model(b)
    trainer = b.inference.Trainer(
        model, AutoDiagonalNormal(model), b.inference.ELBO(), batch_size=N
    )
    with pytest.raises(
        ConfigError, match=r"'_(auto|AutoDiagonalNormal)_latent' lies outside.*use AutoNormal"
    ):
        trainer.init(0, _factor_data())


def test_score_function_objective_evaluates_itself(backend):
    """A trainer fitted by NVIL or VIMCO (sampled discrete latents) evaluates with that
    objective when no eval_objective is given: the default ELBO() would refuse the sites."""
    b = backend
    x = (np.random.default_rng(0).random((40, 16)) < 0.3).astype(np.float32)
    for objective in (b.inference.NVIL(), b.inference.VIMCO(num_particles=3)):
        if b.name == "pyro":
            import pyro

            pyro.clear_param_store()
        sbn = b.models.SigmoidBeliefNet(16, latent=4)
        trainer = b.inference.Trainer(sbn.model, sbn.guide, objective, batch_size=20)
        state, _ = trainer.train_epoch(trainer.init(0, x), x, 0)
        assert np.isfinite(trainer.evaluate(state, x)["elbo"])


def test_grey_values_after_init_are_named_at_every_step(backend):
    """Data outside the likelihood's support given to train_epoch or step after a clean
    init: the same one-line DataError (NumPyro's compiled epoch returned inf silently)."""
    b = backend
    model, guide = _bernoulli_program(b)
    rng = np.random.default_rng(0)
    grey = rng.random((64, 4)).astype(np.float32)
    binary = (grey < 0.5).astype(np.float32)
    trainer = b.inference.Trainer(model, guide, b.inference.ELBO(), batch_size=16)
    state = trainer.init(0, binary)
    with pytest.raises(DataError, match=r"'x'.*Bernoulli"):
        trainer.train_epoch(state, grey, 0)
    with pytest.raises(DataError, match=r"'x'.*Bernoulli"):
        trainer.step(state, grey[:16])
