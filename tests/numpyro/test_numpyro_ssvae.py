"""M2 on NumPyro: the exact sum over classes, the classification term, the semi-supervised
trainer, user networks and bad labels."""

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers

from ppgen.data import MISSING, LabelledBatches, load_dataset
from ppgen.errors import ConfigError, DataError
from ppgen.inference.numpyro import (
    ELBO,
    ClassifierEvaluator,
    DynamicBinarization,
    InputNoise,
    SemiSupervisedELBO,
    Trainer,
    label_distribution,
)
from ppgen.models.numpyro import SSVAE

X_DIM, C, LATENT = 12, 3, 2


def semi_supervised_trainer(m, objective=None, *, num_classes=10, lr=3e-4, **kwargs):
    """The trainer configured for partially labelled data: the labelled/unlabelled
    schedule and the classification error as its evaluation."""
    return Trainer(
        m.model,
        m.guide,
        objective or SemiSupervisedELBO(),
        lr=lr,
        schedule=LabelledBatches(num_classes),
        evaluator=ClassifierEvaluator(),
        **kwargs,
    )


def _model(**kwargs):
    return SSVAE(X_DIM, num_classes=C, latent=LATENT, hidden=(8,), seed=3, **kwargs)


def _x(batch, seed=0):
    """Binary rows in JAX's default float dtype (float64 under the fixture)."""
    return jnp.asarray(np.random.default_rng(seed).random((batch, X_DIM)) < 0.4, float)


@pytest.mark.parametrize("batch", [1, 4])
def test_unlabelled_bound_is_the_sum_over_classes(float64, batch):
    """U(x) = sum_c q(c|x) (L(x, c) - log q(c|x)), each L computed with y observed, same z."""
    m, x = _model(), _x(batch)
    z = np.random.default_rng(1).normal(size=(C, batch, LATENT))
    key = jax.random.PRNGKey(0)
    # the enumerated label at dim -3, left of the one-particle plate: z is (C, 1, batch, L)
    guide = handlers.condition(m.guide, data={"z": jnp.asarray(z[:, None])})
    u = SemiSupervisedELBO().unlabelled_bound(key, m.model, guide, x)

    log_q = jax.nn.log_softmax(m.classifier(x), axis=-1)  # (batch, C)
    total = 0.0
    for c in range(C):
        guide_c = handlers.condition(m.guide, data={"z": jnp.asarray(z[c][None])})
        y = jnp.full(batch, c)
        elbo_c = -ELBO()(key, m.model, guide_c, x, y)  # sum over the batch of L(x_i, c)
        # per example: recompute with batch 1 to weight each row by its own q
        rows = [
            -ELBO()(
                key,
                m.model,
                handlers.condition(m.guide, data={"z": jnp.asarray(z[c][None, i : i + 1])}),
                x[i : i + 1],
                y[i : i + 1],
            )
            for i in range(batch)
        ]
        np.testing.assert_allclose(sum(rows), elbo_c, rtol=1e-10)
        q = jnp.exp(log_q[:, c])
        total += float(jnp.sum(q * (jnp.asarray(rows) - log_q[:, c])))
    np.testing.assert_allclose(float(u), total, rtol=1e-10)
    # Gibbs' inequality: the bound lies below log sum_c exp L(x, c) for each example.
    assert float(u) <= total - float(jnp.sum(jnp.min(log_q, axis=1))) + 1e-9


def test_parts_are_scaled_to_the_whole_sets(float64):
    m = _model()
    # Fixed z draws for the labelled pass (1 particle, 6 rows) and the enumerated unlabelled
    # pass (3 classes, 5 rows): the noise is the same whatever the plate subsampling draws.
    x_l, y_l, x_u = _x(6, 1), jnp.arange(6) % C, _x(5, 2)
    rng = np.random.default_rng(0)
    z = {
        6: jnp.asarray(rng.normal(size=(1, 6, LATENT))),
        5: jnp.asarray(rng.normal(size=(C, 5, LATENT))),
    }

    def fix_z(site):  # the enumerated pass's z is (C, 1, 5, L): a one-particle plate at -2
        if site["name"] != "z":
            return None
        shape = (*site["fn"].batch_shape, LATENT)
        value = z[shape[-2]]
        return value.reshape(shape) if value.size == np.prod(shape) else None

    guide = handlers.substitute(m.guide, substitute_fn=fix_z)
    key = jax.random.PRNGKey(3)
    obj = SemiSupervisedELBO()
    base = obj.parts(key, m.model, guide, x_l, y_l, x_u)
    scaled = obj.parts(key, m.model, guide, x_l, y_l, x_u, num_labelled=18, num_unlabelled=20)
    np.testing.assert_allclose(scaled["labelled"], 3 * base["labelled"], rtol=1e-10)
    np.testing.assert_allclose(scaled["unlabelled"], 4 * base["unlabelled"], rtol=1e-10)
    log_q = jnp.sum(label_distribution(m.guide, x_l).log_prob(y_l))
    # alpha per labelled example = 0.1 (N_l + N_u) / N_l; the batch sum is scaled by N_l/B_l.
    np.testing.assert_allclose(base["classification"], 0.1 * 11 / 6 * log_q, rtol=1e-10)
    np.testing.assert_allclose(scaled["classification"], 0.1 * 38 / 18 * 3 * log_q, rtol=1e-10)
    assert obj.alpha_for(100, 49_900) == pytest.approx(50.0)
    assert SemiSupervisedELBO(alpha=2.0).alpha_for(100, 49_900) == 2.0
    with pytest.raises(ConfigError):
        SemiSupervisedELBO(alpha=-1.0)


def test_gradients_reach_every_network():
    """Each network gets a gradient from the whole objective; the labelled ELBO alone gives
    the classifier none. (The gradient is compiled whole: eagerly, each of its hundreds of
    operations would be compiled on its own.)"""
    m = _model()
    x_l, y_l, x_u = _x(3, 1), jnp.asarray([0, 1, 2]), _x(4, 2)

    def loss(nets, alpha, unlabelled):
        bound = copy.copy(m)
        bound.classifier, bound.encoder, bound.decoder = nets
        obj = SemiSupervisedELBO(alpha=alpha)
        parts = obj.parts(jax.random.PRNGKey(0), bound.model, bound.guide, x_l, y_l, x_u)
        return -(parts["labelled"] + parts["classification"] + unlabelled * parts["unlabelled"])

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 2))
    nets = (m.classifier, m.encoder, m.decoder)
    grads = grad(nets, None, 1.0)
    for name, g in zip(("classifier", "encoder", "decoder"), grads, strict=True):
        norm = sum(float(jnp.sum(leaf**2)) for leaf in jax.tree_util.tree_leaves(g))
        assert norm > 0, name
    # Labelled data alone reaches the classifier only through the classification term.
    g = grad(nets, 0.0, 0.0)[0]
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree_util.tree_leaves(g))


def test_model_methods():
    m = _model()
    x = _x(5)
    probs = m.classify(x)
    assert probs.shape == (5, C)
    np.testing.assert_allclose(np.asarray(probs.sum(-1)), 1.0, rtol=1e-6)
    assert np.array_equal(m.predict(x), np.argmax(probs, -1))
    key = jax.random.PRNGKey(0)
    assert m.sample(key, 7).shape == (7, X_DIM)
    assert m.sample(key, 4, y=2).shape == (4, X_DIM)
    assert m.reconstruct(key, x).shape == (5, X_DIM)
    out = m.analogies(x, [0, 1, 2, 1])
    assert out.shape == (5, 4, X_DIM)
    np.testing.assert_allclose(out[:, 1], out[:, 3])  # same style, same class: same image
    grey = jnp.full((2, X_DIM), 0.5)  # grey levels: the Bernoulli cross-entropy scores them
    trace = handlers.trace(handlers.seed(m.model, key)).get_trace(grey, jnp.asarray([0, 1]))
    assert np.isfinite(float(trace["x"]["fn"].log_prob(grey).sum()))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        m.model(jnp.full((2, X_DIM), 1.5))
    with pytest.raises(DataError, match="0..2"):
        m.sample(key, 2, y=3)
    with pytest.raises(DataError, match="integer"):
        m.model(x, jnp.asarray([0.0, 1, 2, 0, 1]))
    with pytest.raises(DataError, match="one label per row"):
        m.model(x, jnp.asarray([0, 1]))


class _UserEncoder(eqx.Module):
    """A user's own encoder: any Equinox module mapping [x, onehot(y)] to [loc, pre_scale]."""

    net: eqx.nn.MLP

    def __init__(self, n_in, n_out, key):
        self.net = eqx.nn.MLP(n_in, n_out, 32, 1, activation=jax.nn.elu, key=key)

    def __call__(self, h):
        return jnp.vectorize(self.net, signature="(i)->(o)")(h)


def test_user_network_with_wrong_shape_is_refused():
    with pytest.raises(ConfigError, match="encoder must map"):
        _model(encoder=_UserEncoder(X_DIM + C, 3, jax.random.PRNGKey(0)))


def test_trains_on_user_labels_with_user_encoder(tmp_path):
    """End to end: a partially labelled array made by hand (-1 where missing) and a user's
    Equinox encoder; M2 learns the 8x8 digits from 5 labels per class."""
    from ppgen.driver import fit

    train, valid = load_dataset("digits", "train"), load_dataset("digits", "valid")
    y = np.full(len(train), MISSING)
    for c in range(10):
        y[np.flatnonzero(train.y == c)[:5]] = c  # the user's own choice of labelled rows
    d = train.x.shape[1]
    encoder = _UserEncoder(d + 10, 2 * 8, jax.random.PRNGKey(1))
    m = SSVAE(d, latent=8, hidden=(64,), encoder=encoder, seed=0)
    trainer = semi_supervised_trainer(m, lr=3e-3, batch_size=50, transform=DynamicBinarization())
    result = fit(
        trainer, (train.x, y), (valid.x, valid.y), run_dir=tmp_path, epochs=25, progress=False
    )
    errors = [r["valid_error"] for r in result.history]
    assert errors[-1] < 0.4 < 0.9 - 0.1 < errors[0] + 0.5  # chance is 0.9
    assert min(errors) < 0.3
    trained = m.bind(trainer.params(result.state))
    assert np.mean(np.asarray(trained.predict(valid.x)) != valid.y) == pytest.approx(errors[-1])


def test_resume_from_state_arrays_is_exact():
    rng = np.random.default_rng(0)
    x = (rng.random((120, X_DIM)) < 0.5).astype(np.float32)
    y = np.full(120, MISSING)
    y[:6] = [0, 1, 2, 0, 1, 2]
    m = _model()
    trainer = Trainer(
        m.model,
        m.guide,
        SemiSupervisedELBO(),
        lr=3e-4,
        batch_size=20,
        schedule=LabelledBatches(C, labelled_batch_size=4),
        evaluator=ClassifierEvaluator(),
    )
    state = trainer.init(0, (x, y))
    state, _ = trainer.train_epoch(state, (x, y), 0)
    arrays, meta = trainer.state_arrays(state)
    restored = trainer.load_state_arrays(trainer.init(0, (x, y)), arrays, meta)
    a, _ = trainer.train_epoch(state, (x, y), 1)
    b, _ = trainer.train_epoch(restored, (x, y), 1)
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert np.array_equal(np.asarray(u), np.asarray(v))


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.full(120, 0.0), DataError, "dtype float"),
        (np.zeros(119, np.int64), DataError, "119 labels"),
        (np.r_[np.full(119, MISSING), 7], DataError, "outside 0..2"),
        (np.r_[np.full(118, MISSING), 0, 1], ConfigError, "fewer than the 3 classes"),
        (np.array(["a"] * 120), DataError, "dtype"),
    ],
)
def test_bad_labels_are_refused(labels, error, match):
    x = (np.random.default_rng(0).random((120, X_DIM)) < 0.5).astype(np.float32)
    m = _model()
    trainer = semi_supervised_trainer(m, num_classes=C, batch_size=20)
    state = trainer.init(0, x)
    with pytest.raises(error, match=match):
        trainer.train_epoch(state, (x, labels), 0)


def test_the_labelled_schedule_refuses_num_data():
    """The set sizes come from the labels: a num_data would be silently ignored."""
    with pytest.raises(ConfigError, match="leave num_data out"):
        semi_supervised_trainer(_model(), num_classes=C, batch_size=10, num_data=500)


def test_step_on_one_batch_triple():
    rng = np.random.default_rng(0)
    x_l, x_u = ((rng.random((n, X_DIM)) < 0.5).astype(np.float32) for n in (6, 10))
    m = _model()
    trainer = semi_supervised_trainer(m, num_classes=C, batch_size=10)
    state = trainer.init(0, x_u)
    before = jax.tree_util.tree_leaves(trainer.params(state))
    state, metrics = trainer.step(state, (x_l, np.array([0, 1, 2, 0, 1, 2]), x_u))
    assert np.isfinite(metrics["loss"]) and int(state.step) == 1
    after = jax.tree_util.tree_leaves(trainer.params(state))
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    with pytest.raises(DataError, match="missing"):
        trainer.step(state, (x_l, np.array([0, 1, 2, 0, 1, -1]), x_u))


def _noise_run(input_scale, **kwargs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, X_DIM)).astype(np.float32)
    y = np.full(60, MISSING)
    y[:6] = [0, 1, 2, 0, 1, 2]
    m = _model(likelihood="gaussian")
    transform = None if input_scale is None else InputNoise(input_scale)
    trainer = semi_supervised_trainer(
        m, num_classes=C, batch_size=20, transform=transform, **kwargs
    )
    state, _ = trainer.train_epoch(trainer.init(0, (x, y)), (x, y), 0)
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(trainer.params(state))]


def test_input_noise_is_added_to_training_batches():
    plain = _noise_run(None)
    zero = _noise_run(np.zeros((60, X_DIM), np.float32))
    noisy = _noise_run(np.full((60, X_DIM), 0.5, np.float32))
    assert all(np.array_equal(a, b) for a, b in zip(plain, zero, strict=True))
    assert any(not np.allclose(a, b) for a, b in zip(plain, noisy, strict=True))


def test_input_scale_is_checked_against_every_epochs_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, X_DIM)).astype(np.float32)
    y = np.full(60, MISSING)
    y[:6] = [0, 1, 2, 0, 1, 2]
    m = _model(likelihood="gaussian")
    scale = np.full((60, X_DIM), 0.5, np.float32)
    trainer = semi_supervised_trainer(m, num_classes=C, batch_size=20, transform=InputNoise(scale))
    state, _ = trainer.train_epoch(trainer.init(0, (x, y)), (x, y), 0)
    with pytest.raises(DataError, match="one standard deviation per"):
        trainer.train_epoch(state, (x[:40], y[:40]), 1)


@pytest.mark.parametrize(
    "scale, kwargs, error, match",
    [
        (np.ones((59, X_DIM), np.float32), {}, DataError, "one standard deviation per"),
        (-np.ones((60, X_DIM), np.float32), {}, DataError, "non-negative"),
        (np.ones((60, X_DIM), np.int64), {}, DataError, "float array"),
    ],
)
def test_bad_input_scale_is_refused(scale, kwargs, error, match):
    with pytest.raises(error, match=match):
        _noise_run(scale, **kwargs)
