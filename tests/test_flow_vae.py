"""FlowVAE: a VAE whose q(z | x) (IAF, planar, spline IAF) or p(z) (MAF, RealNVP, spline MAF)
is a normalizing flow, on both backends.

Invariants: log q(z | x) of the guide's one ``TransformedDistribution`` site is the
change-of-variables formula with the autodiff Jacobian (on the values cached from the draw
and through the inverse); the two backends give the same bounds for the same weights and
latents (float64); gradients reach every flow parameter; IWAE with one particle is the
ELBO; fresh flows (zero last layers) give exactly the plain VAE's ELBO; analytic KL is
refused in one line; the ``vae`` recipe's defaults still build the plain VAE.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers as nh
from pyro import poutine

import ppgen.inference.numpyro as inf_j
import ppgen.inference.pyro as inf_t
import ppgen.models.numpyro as mod_j
import ppgen.models.pyro as mod_t
from ppgen import runs
from ppgen.errors import ConfigError

X_DIM, LATENT = 10, 3
SMALL = dict(latent=LATENT, hidden=(8,), flow_layers=2, flow_hidden=(6,))
# (posterior flow, prior flow): every flow of each side once
FLOWS = [
    ("iaf", "none"),
    ("planar", "none"),
    ("nsf", "none"),
    ("none", "maf"),
    ("none", "realnvp"),
    ("iaf", "nsf"),
]
IDS = [f"{q}-{p}" for q, p in FLOWS]


def _random_weights(model, seed=0, scale=0.4):
    """Every weight drawn afresh (the flows' last layers start at zero: a fresh flow is the
    identity, which would hide a wrong Jacobian)."""
    rng = np.random.default_rng(seed)
    return {k: scale * rng.normal(size=v.shape) for k, v in model.get_weights().items()}


def _twins(posterior_flow, prior_flow, **kwargs):
    """A Pyro and a NumPyro FlowVAE holding the same random float64 weights."""
    kwargs = {**SMALL, **kwargs, "posterior_flow": posterior_flow, "prior_flow": prior_flow}
    t = mod_t.FlowVAE(X_DIM, seed=1, **kwargs)  # float64 by the fixture's default dtype
    j = mod_j.FlowVAE(X_DIM, seed=2, **kwargs)
    weights = _random_weights(t)
    assert set(weights) == set(j.get_weights())
    t.set_weights(weights)
    j.set_weights(weights)
    return t, j


def _x(batch=4, seed=0):
    return (np.random.default_rng(seed).random((batch, X_DIM)) < 0.4).astype(np.float64)


def _model(backend, posterior_flow, prior_flow="none", seed=0, **kwargs):
    model = backend.models.FlowVAE(
        X_DIM, **{**SMALL, **kwargs}, posterior_flow=posterior_flow, prior_flow=prior_flow
    )
    model.set_weights(_random_weights(model, seed))
    return model


# -- log q(z | x) is the change-of-variables formula ----------------------------------------


def _log_q_pyro(model, x, eps):
    """(log q from the draw's cache, log q through the inverse, the formula's value)."""
    q = model.posterior(torch.from_numpy(x))
    base = q.base_dist
    u = base.base_dist.loc + base.base_dist.scale * torch.from_numpy(eps)

    def push(v):
        for t in q.transforms:
            v = t(v)
        return v

    z = push(u)
    cached = q.log_prob(z)
    inverse = q.log_prob(z.detach().clone())  # a new tensor: no cache, the flow inverted
    jac = torch.autograd.functional.jacobian(push, u)  # (batch, D, batch, D)
    rows = range(len(x))
    logdet = torch.stack([torch.linalg.slogdet(jac[b, :, b, :])[1] for b in rows])
    return cached, inverse, base.log_prob(u) - logdet


def _log_q_numpyro(model, x, eps):
    return jax.jit(lambda x, eps: _log_q_numpyro_traced(model, x, eps))(x, eps)


def _log_q_numpyro_traced(model, x, eps):
    q = model.posterior(x)
    base = q.base_dist
    u = base.base_dist.loc + base.base_dist.scale * eps

    def push(v):
        for t in q.transforms:
            v = t(v)
        return v

    # the intermediates NumPyro records with a draw: [u_k, transform's own] per layer
    intermediates, z = [], u
    for t in q.transforms:
        y, inter = t.call_with_intermediates(z)
        intermediates.append([z, inter])
        z = y
    cached = q.log_prob(z, intermediates)
    inverse = q.log_prob(push(u))  # z recomputed: the flow inverted
    jac = jax.jacfwd(push)(u)  # (batch, D, batch, D)
    logdet = jnp.stack([jnp.linalg.slogdet(jac[b, :, b, :])[1] for b in range(len(x))])
    return cached, inverse, base.log_prob(u) - logdet


@pytest.mark.parametrize("flow", ["iaf", "planar", "nsf"])
def test_log_q_is_the_change_of_variables_formula(float64, backend, flow):
    model = _model(backend, flow)
    x = _x()
    eps = np.random.default_rng(1).normal(size=(len(x), LATENT))
    fn = _log_q_pyro if backend.name == "pyro" else _log_q_numpyro
    cached, inverse, expected = (backend.numpy(v) for v in fn(model, x, eps))
    assert cached.shape == (len(x),)
    # float64: only rounding differs between the layers' ladj and the autodiff determinant
    np.testing.assert_allclose(cached, expected, rtol=0, atol=1e-9)
    # the inverse (a root find for planar, D passes for the autoregressive ones) agrees
    np.testing.assert_allclose(inverse, expected, rtol=0, atol=1e-7)


def test_the_guide_site_is_one_transformed_distribution(backend):
    model = _model(backend, "iaf")
    x = backend.array(_x())
    tr = backend.trace(model.guide, x)
    assert set(tr) == {"z"}
    fn = tr["z"]["fn"]
    assert "TransformedDistribution" in type(fn).__name__
    # Pyro: the layers in one composition that keeps the draw's log-determinant
    layers = fn.transforms if backend.name == "numpyro" else fn.transforms[0].parts
    assert len(layers) == 2
    assert tuple(fn.event_shape) == (LATENT,) and tuple(fn.batch_shape) == (4,)


# -- the two backends agree ------------------------------------------------------------------


@pytest.mark.parametrize(("posterior_flow", "prior_flow"), FLOWS, ids=IDS)
def test_same_bounds_for_same_weights_and_latents(float64, posterior_flow, prior_flow):
    k, batch = 3, 4
    t, j = _twins(posterior_flow, prior_flow)
    x = _x(batch)
    z = np.random.default_rng(2).normal(size=(k, batch, LATENT))
    # the guide given z: log q(z | x) through the flow's inverse on both sides
    tg = poutine.condition(t.guide, data={"z": torch.from_numpy(z)})
    xt = torch.from_numpy(x)
    lw_t = inf_t.log_weights(t.model, tg, xt, num_particles=k, num_data=10).detach()
    elbo_t = inf_t.ELBO(num_particles=k)(t.model, tg, xt, num_data=10).item()
    iwae_t = inf_t.IWAE(num_particles=k)(t.model, tg, xt, num_data=10).item()
    lq_t = t.posterior(xt).log_prob(torch.from_numpy(z)).detach()
    lp_t = t.prior().log_prob(torch.from_numpy(z)).detach()

    @jax.jit
    def numpyro_side(x, z):
        key = jax.random.PRNGKey(0)
        jg = nh.condition(j.guide, data={"z": z})
        return (
            inf_j.log_weights(key, j.model, jg, x, num_particles=k, num_data=10),
            inf_j.ELBO(num_particles=k)(key, j.model, jg, x, num_data=10),
            inf_j.IWAE(num_particles=k)(key, j.model, jg, x, num_data=10),
            j.posterior(x).log_prob(z),
            j.prior().log_prob(z),
        )

    lw_j, elbo_j, iwae_j, lq_j, lp_j = numpyro_side(jnp.asarray(x), jnp.asarray(z))
    assert lw_t.shape == lw_j.shape == (k, batch)
    assert np.all(np.isfinite(lw_t.numpy()))
    # same weights, same z, float64: only the order of summation differs
    for a, b in [(lw_t, lw_j), (elbo_t, elbo_j), (iwae_t, iwae_j), (lq_t, lq_j), (lp_t, lp_j)]:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-5)


# -- training sees the flow --------------------------------------------------------------------


@pytest.mark.parametrize(("posterior_flow", "prior_flow"), [("iaf", "realnvp")])
def test_gradients_reach_every_flow_parameter(backend, posterior_flow, prior_flow):
    model = _model(backend, posterior_flow, prior_flow)
    grads = backend.grads({"iwae": backend.inference.IWAE(num_particles=3)}, model, _x())
    for name, by_param in grads.items():
        flows = {k: g for k, g in by_param.items() if "flow" in k}
        assert {"posterior", "prior"} <= {k.split("_flow")[0].split("'")[-1] for k in flows}
        for key, g in flows.items():
            assert g is not None and np.any(g != 0) and np.all(np.isfinite(g)), (name, key)


@pytest.mark.parametrize("flow", ["iaf", "planar"])
def test_iwae_with_one_particle_is_the_elbo(backend, flow):
    model = _model(backend, flow, "realnvp")
    x = backend.array(_x())
    objectives = (backend.inference.ELBO(), backend.inference.IWAE(num_particles=1))
    bounds = backend.jit(
        lambda x: [backend.call(o, model.model, model.guide, x, seed=3) for o in objectives]
    )(x)
    elbo, iwae = (float(backend.numpy(b)) for b in bounds)
    assert np.isfinite(elbo)
    assert iwae == pytest.approx(elbo, rel=1e-5)


FRESH = [
    pytest.param("iaf", "maf", id="iaf-maf"),
    pytest.param("planar", "realnvp", id="planar-realnvp"),
    pytest.param("nsf", "nsf", id="nsf-nsf"),
]


@pytest.mark.parametrize(("posterior_flow", "prior_flow"), FRESH)
def test_fresh_flows_give_the_plain_vae_elbo(float64, backend, posterior_flow, prior_flow):
    """Zero last layers make every flow the identity: the same encoder (its ``h`` rows
    aside) and decoder give the plain VAE's bounds at the same latents."""
    flow_vae = backend.models.FlowVAE(
        X_DIM, **SMALL, posterior_flow=posterior_flow, prior_flow=prior_flow, seed=4
    )
    vae = backend.models.VAE(X_DIM, latent=LATENT, hidden=(8,), seed=5)
    weights = flow_vae.get_weights()
    for key, value in vae.get_weights().items():
        rows = len(value)
        weights[key] = np.concatenate([value, weights[key][rows:]])  # h's rows kept
    flow_vae.set_weights(weights)
    x = backend.array(_x())
    z = {"z": np.random.default_rng(7).normal(size=(3, 4, LATENT))}
    objectives = (backend.inference.ELBO(num_particles=3), backend.inference.IWAE(3))

    def bounds(x, m):
        guide = backend.condition(m.guide, z)
        return [backend.call(o, m.model, guide, x, num_data=12) for o in objectives]

    plain = [float(backend.numpy(b)) for b in backend.jit(lambda x: bounds(x, vae))(x)]
    flow = [float(backend.numpy(b)) for b in backend.jit(lambda x: bounds(x, flow_vae))(x)]
    np.testing.assert_allclose(flow, plain, rtol=1e-12)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("posterior_flow", "prior_flow"), [("iaf", "none"), ("none", "maf")])
def test_analytic_kl_with_a_flow_is_refused_in_one_line(backend, posterior_flow, prior_flow):
    model = _model(backend, posterior_flow, prior_flow)
    which = "posterior q" if posterior_flow != "none" else "prior p"
    with pytest.raises(ConfigError, match=f"its {which} is a TransformedDistribution") as err:
        backend.loss(
            backend.inference.ELBO(analytic_kl=True), model.model, model.guide, backend.array(_x())
        )
    assert "\n" not in str(err.value) and "analytic_kl=False" in str(err.value)
    # the Monte Carlo KL of the same pair is fine
    elbo = backend.inference.ELBO()
    mc = backend.jit(lambda x: backend.call(elbo, model.model, model.guide, x))(backend.array(_x()))
    assert np.isfinite(float(backend.numpy(mc)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(posterior_flow="realnvp"), "unknown posterior flow"),
        (dict(prior_flow="iaf"), "unknown prior flow"),
        (dict(flow_layers=0), "flow_layers must be >= 1"),
        (dict(flow_hidden=(0,)), "flow_hidden"),
    ],
)
def test_bad_flow_settings_are_refused(backend, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        backend.models.FlowVAE(X_DIM, latent=LATENT, hidden=(8,), **kwargs)


# -- the recipe ----------------------------------------------------------------------------


def test_the_vae_recipe_defaults_are_the_plain_vae():
    config = runs.make_config("vae", dataset="digits")
    assert config.options.posterior_flow == "none" and config.options.prior_flow == "none"
    assert not config.options.has_flow
    # a config written before flows (no flow keys) loads with the defaults
    raw = json.loads(config.to_json())
    for key in ("posterior_flow", "prior_flow", "flow_layers", "flow_hidden"):
        raw["options"].pop(key)
    assert runs.RunConfig.from_json(raw) == config


def test_the_recipe_refuses_analytic_kl_with_a_flow():
    with pytest.raises(ConfigError, match="drop --analytic-kl"):
        runs.make_config("vae", dataset="digits", posterior_flow="iaf", analytic_kl=True)
    with pytest.raises(ConfigError, match="unknown posterior_flow"):
        runs.make_config("vae", dataset="digits", posterior_flow="glow")
    with pytest.raises(ConfigError, match="hvae takes no setting"):
        runs.make_config("hvae", dataset="digits", posterior_flow="iaf")


def test_a_flow_vae_trains_evaluates_and_reloads_through_the_cli(tmp_path, capsys):
    """Pyro's (eager, fast to test); NumPyro's trainer meets the same pair in
    benchmarks/vae_flow.py --quick, its weights round trip below."""
    from ppgen.cli import main

    out = tmp_path / "run"
    args = ["train", "vae", "--backend", "pyro", "--dataset", "digits", "--epochs", "2"]
    tiny = ["--latent", "4", "--hidden", "32", "--flow-hidden", "16", "--batch-size", "100"]
    flows = ["--posterior-flow", "iaf", "--prior-flow", "realnvp"]
    assert main([*args, *tiny, *flows, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    run = runs.load_trained(out)
    assert type(run.model).__name__ == "FlowVAE"
    assert run.config.options.flow_layers == 2
    result = runs.evaluate(run, k=20, limit=50, progress=False)
    assert np.isfinite(result["test_nll"]) and result["test_nll"] < -result["test_elbo"] + 1.0


def test_trained_params_bind_back_into_the_model(backend):
    """The param sites the trainer optimises are the model's weights (``bind``), flows
    included, under the same keys on both backends."""
    model = _model(backend, "planar", "maf")
    x = backend.array(_x())
    sites = {}
    for fn in (model.guide, model.model):
        if backend.name == "pyro":
            with poutine.trace(param_only=True) as tr:
                fn(x)
            sites.update({n: s["value"] for n, s in tr.trace.nodes.items()})
        else:
            tr = nh.trace(nh.seed(fn, jax.random.PRNGKey(0))).get_trace(x)
            sites.update({n: s["value"] for n, s in tr.items() if s["type"] == "param"})
    assert any(n.startswith("posterior_flow") for n in sites)
    assert any(n.startswith("prior_flow") for n in sites)
    fresh = backend.models.FlowVAE(X_DIM, **SMALL, posterior_flow="planar", prior_flow="maf")
    weights = fresh.bind(sites).get_weights()
    expected = model.get_weights()
    assert set(weights) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(weights[key], value, err_msg=key)


def test_a_pyro_flow_vae_converts_to_float64():
    """A module holding flow layers converts like any torch module (.double(), .to())."""
    model = mod_t.FlowVAE(X_DIM, **SMALL, posterior_flow="iaf").double()
    assert all(p.dtype == torch.float64 for p in model.parameters())
