"""NumPyro models: shapes over batch sizes, weights round trips, closed forms, input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro import handlers

from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.models.numpyro import MLP, VAE, HierarchicalVAE, LinearGaussian

KEY = jax.random.PRNGKey(0)


def _binary(batch, x_dim, seed=0):
    return (np.random.default_rng(seed).random((batch, x_dim)) < 0.4).astype(np.float32)


@pytest.mark.parametrize("activation", ["tanh", "relu", "softplus", "elu"])
@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
def test_mlp_matches_a_numpy_forward_pass(activation, lead):
    net = MLP([4, 5, 2], activation, seed=1)
    x = np.random.default_rng(0).normal(size=(*lead, 4)).astype(np.float32)
    w = net.state_dict()
    act = {
        "tanh": np.tanh,
        "relu": lambda a: np.maximum(a, 0),
        "softplus": lambda a: np.log1p(np.exp(a)),
        "elu": lambda a: np.where(a > 0, a, np.expm1(a)),
    }[activation]
    h = act(x @ w["layers.0.weight"].T + w["layers.0.bias"])
    expected = h @ w["layers.1.weight"].T + w["layers.1.bias"]  # no activation after the last
    np.testing.assert_allclose(np.asarray(net(jnp.asarray(x))), expected, rtol=1e-5, atol=1e-6)
    assert w["layers.0.weight"].shape == (5, 4)  # torch layout (out, in)


def test_mlp_rejects_unknown_activation_and_bad_sizes():
    with pytest.raises(ConfigError, match="activation"):
        MLP([3, 2], "sigmoidish")
    with pytest.raises(ConfigError):
        MLP([3])


MODELS = {
    "vae": (VAE, dict(latent=3, hidden=(8, 6))),
    "vae-gaussian": (VAE, dict(latent=3, hidden=(8,), likelihood="gaussian")),
    "vae-gaussian-fixed": (VAE, dict(latent=3, hidden=(8,), likelihood="gaussian", scale=0.3)),
    "hvae": (HierarchicalVAE, dict(latents=(4, 2), hidden=((8,), (5,)))),
}


def _build(name, seed=0):
    cls, kwargs = MODELS[name]
    return cls(12, seed=seed, **kwargs)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 7])
def test_user_facing_methods_have_the_right_shapes(name, batch):
    model = _build(name)
    x = jnp.asarray(_binary(batch, 12))
    z_dim = model.latent if isinstance(model, VAE) else model.latents[0]
    loc, scale = model.encode(x)
    assert loc.shape == scale.shape == (batch, z_dim) and bool(jnp.all(scale > 0))
    assert model.decode(loc).shape == (batch, 12)
    assert model.reconstruct(KEY, x).shape == (batch, 12)
    samples = model.sample(KEY, 5)
    assert samples.shape == (5, 12) and bool(jnp.all(jnp.isfinite(samples)))
    if model.likelihood == "bernoulli":  # mean images are probabilities
        assert bool(jnp.all((samples >= 0) & (samples <= 1)))


@pytest.mark.parametrize("name", MODELS)
def test_model_and_guide_sites_follow_the_convention(name):
    model = _build(name)
    x = jnp.asarray(_binary(5, 12))
    tr = handlers.trace(handlers.seed(model.model, KEY)).get_trace(x, num_data=50)
    gtr = handlers.trace(handlers.seed(model.guide, KEY)).get_trace(x, num_data=50)
    assert tr["x"]["is_observed"] and tr["data"]["args"] == (50, 5)
    latents = {n for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    assert latents == {n for n, s in gtr.items() if s["type"] == "sample"}
    for site in (*tr.values(), *gtr.values()):
        if site["type"] == "sample":
            assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    params = {n for t in (tr, gtr) for n, s in t.items() if s["type"] == "param"}
    expected = {f"{net}$params" for net in model.nets}
    if model.likelihood == "gaussian" and model.fixed_scale is None:
        expected.add("decoder_scale_raw")
    assert params == expected


@pytest.mark.parametrize("name", MODELS)
def test_weights_round_trip_into_a_differently_seeded_twin(name):
    a, b = _build(name, seed=0), _build(name, seed=5)
    weights = a.get_weights()
    assert any(not np.array_equal(v, b.get_weights()[k]) for k, v in weights.items())
    b.set_weights(weights)
    got = b.get_weights()
    assert set(got) == set(weights)
    for k in weights:
        np.testing.assert_array_equal(got[k], weights[k])
        assert got[k].dtype == weights[k].dtype
    x = jnp.asarray(_binary(4, 12))
    np.testing.assert_array_equal(np.asarray(a.encode(x)[0]), np.asarray(b.encode(x)[0]))
    np.testing.assert_array_equal(np.asarray(a.sample(KEY, 3)), np.asarray(b.sample(KEY, 3)))


def test_weight_keys_are_torch_style():
    keys = set(VAE(12, latent=3, hidden=(8,), likelihood="gaussian").get_weights())
    assert keys == {
        "encoder.layers.0.weight",
        "encoder.layers.0.bias",
        "encoder.layers.1.weight",
        "encoder.layers.1.bias",
        "decoder.layers.0.weight",
        "decoder.layers.0.bias",
        "decoder.layers.1.weight",
        "decoder.layers.1.bias",
        "decoder_scale_raw",
    }
    hkeys = HierarchicalVAE(12, latents=(4, 2), hidden=((8,), (5,))).get_weights()
    assert {k.split(".")[0] for k in hkeys} == {"encoder1", "encoder2", "decoder2", "decoder1"}
    assert hkeys["decoder2.layers.1.weight"].shape == (8, 5)  # z2 -> 5 -> 2 * latents[0]


def test_set_weights_of_another_model_is_a_checkpoint_error():
    small, big = VAE(12, latent=3, hidden=(8,)), VAE(12, latent=3, hidden=(9,))
    with pytest.raises(CheckpointError, match="shape"):
        small.set_weights(big.get_weights())
    with pytest.raises(CheckpointError, match="missing"):
        small.set_weights({"encoder.layers.0.weight": np.zeros((8, 12))})


def test_bind_returns_a_new_model_with_the_given_params():
    vae = VAE(12, latent=3, hidden=(8,), likelihood="gaussian")
    tr = handlers.trace(handlers.seed(vae.model, KEY)).get_trace(jnp.zeros((2, 12)))
    gtr = handlers.trace(handlers.seed(vae.guide, KEY)).get_trace(jnp.zeros((2, 12)))
    params = {n: s["value"] for t in (tr, gtr) for n, s in t.items() if s["type"] == "param"}
    params = jax.tree.map(lambda a: a + 0.5, params)
    bound = vae.bind(params)
    assert bound is not vae
    np.testing.assert_allclose(
        bound.get_weights()["decoder_scale_raw"], vae.get_weights()["decoder_scale_raw"] + 0.5
    )
    np.testing.assert_allclose(
        bound.get_weights()["encoder.layers.0.bias"],
        vae.get_weights()["encoder.layers.0.bias"] + 0.5,
        rtol=1e-6,
    )
    with pytest.raises(ConfigError, match="params lack"):
        vae.bind({})


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_is_a_data_error(name):
    model = _build(name)
    with pytest.raises(DataError, match=r"\(batch, 12\)"):
        model.model(jnp.zeros((3, 11)))
    with pytest.raises(DataError, match=r"\(batch, 12\)"):
        model.encode(jnp.zeros(12))
    x = np.zeros((3, 12), np.float32)
    x[1, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        handlers.seed(model.guide, KEY)(jnp.asarray(x))
    grey = jnp.full((2, 12), 0.5)
    model.encode(grey)  # networks read grey levels (M1's features of grey images)
    handlers.seed(model.guide, KEY)(grey)
    if model.likelihood == "bernoulli":  # only the density needs binary data
        with pytest.raises(DataError, match="binary x .* dynamic_binarization"):
            handlers.seed(model.model, KEY)(grey)
        with numpyro.validation_enabled(False):  # NumPyro's switch, as Pyro's for the twin
            handlers.seed(model.model, KEY)(grey)
    else:
        handlers.seed(model.model, KEY)(grey)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="likelihood"):
        VAE(4, likelihood="poisson")
    with pytest.raises(ConfigError, match="scale"):
        VAE(4, likelihood="gaussian", scale=-1.0)
    with pytest.raises(ConfigError):
        HierarchicalVAE(4, latents=(3,))
    with pytest.raises(ConfigError, match="latent"):
        LinearGaussian(2, 3)


@pytest.mark.parametrize("x_dim, latent, batch", [(3, 1, 1), (6, 2, 4), (5, 5, 2)])
def test_linear_gaussian_closed_forms(float64, x_dim, latent, batch):
    lg = LinearGaussian(x_dim, latent, seed=3)
    x = np.random.default_rng(0).normal(size=(batch, x_dim))
    # Independent route: condition the joint Gaussian of (z, x) directly, in numpy.
    w, b, var = np.asarray(lg.W), np.asarray(lg.b), float(np.exp(2 * lg.log_sigma))
    s_xx = w @ w.T + var * np.eye(x_dim)
    gain = w.T @ np.linalg.inv(s_xx)  # Cov(z, x) Cov(x)^-1
    d = x - b
    log_px = -0.5 * (
        np.linalg.slogdet(2 * np.pi * s_xx)[1] + np.einsum("bi,ij,bj->b", d, np.linalg.inv(s_xx), d)
    )

    def closed_forms(x):  # compiled once: eager dispatch of each linalg op costs more
        return lg.exact_posterior(x), lg.exact_log_px(x)

    (mean, cov), got = jax.jit(closed_forms)(x)
    np.testing.assert_allclose(mean, d @ gain.T, atol=1e-10)
    np.testing.assert_allclose(cov, np.eye(latent) - gain @ w, atol=1e-10)
    np.testing.assert_allclose(got, log_px, atol=1e-10)
    # The initial W has orthogonal columns, so the optimal diagonal guide is the posterior.
    lg.optimal_guide()
    np.testing.assert_allclose(x @ np.asarray(lg.guide_A).T + lg.guide_c, mean, atol=1e-10)
    np.testing.assert_allclose(np.exp(2 * lg.guide_log_s), np.diag(cov), atol=1e-10)


def test_linear_gaussian_weights_round_trip():
    a, b = LinearGaussian(5, 2, seed=0), LinearGaussian(5, 2, seed=1)
    assert set(a.get_weights()) == {"W", "b", "log_sigma", "guide_A", "guide_c", "guide_log_s"}
    b.set_weights(a.optimal_guide().get_weights())
    for k, v in a.get_weights().items():
        np.testing.assert_array_equal(b.get_weights()[k], v)
    bound = LinearGaussian(5, 2, seed=1).bind(a.get_weights())
    np.testing.assert_array_equal(np.asarray(bound.guide_A), np.asarray(a.guide_A))


@pytest.mark.parametrize("hidden", [(), (5,), (5, 4)])
def test_mlp_call_concat_equals_the_concatenated_call(float64, hidden):
    """``call_concat(a, b)`` is ``net(concat([a, b]))`` with a and b broadcast (M2's
    ``[x, onehot(y)]`` for every class at once)."""
    net = MLP([6 + 3, *hidden, 2], "softplus", seed=1)
    rng = np.random.default_rng(0)
    a, b = jnp.asarray(rng.normal(size=(4, 6))), jnp.asarray(rng.normal(size=(3, 1, 3)))
    full = net(
        jnp.concatenate([jnp.broadcast_to(a, (3, 4, 6)), jnp.broadcast_to(b, (3, 4, 3))], -1)
    )
    np.testing.assert_allclose(net.call_concat(a, b), full, rtol=1e-12, atol=1e-12)
