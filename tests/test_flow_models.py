"""Flows as models (``ppgen.models.{pyro,numpyro}.flow``): the layer plans, exact
log-likelihoods through ppgen's trainer, objectives and estimator with an empty guide, the
two backends' parity, conditional densities, sampling paths and bad input."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

import ppgen.inference.numpyro as ni
import ppgen.inference.pyro as pi
import ppgen.models.numpyro as nm
import ppgen.models.pyro as pm
from ppgen.errors import ConfigError, DataError
from ppgen.inference.pyro.handlers import ParamSubstituteMessenger
from ppgen.models import flows

VECTOR = ("planar", "radial", "nice", "realnvp", "maf", "iaf", "nsf", "nsf_ar")
# Planar maps have no closed-form inverse (a root find); IAF's inverse takes D passes.
SMALL = {"layers": 3, "hidden": (8, 8), "seed": 3}


def random_weights(weights, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    return {k: scale * rng.standard_normal(np.shape(v)) for k, v in weights.items()}


def pair(name, dim=2, context_dim=0, **kw):
    """The same flow density on both backends, with the same random weights."""
    settings = {**SMALL, **kw}
    cls = "ConditionalFlowDensity" if context_dim else "FlowDensity"
    p = getattr(pm, cls)((dim,), pm.build_flow(name, (dim,), context_dim=context_dim, **settings))
    n = getattr(nm, cls)((dim,), nm.build_flow(name, (dim,), context_dim=context_dim, **settings))
    w = random_weights(p.get_weights(), seed=11)
    p.set_weights(w)
    n.set_weights(w)
    return p, n


def rows(n=20, dim=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim))


# -- the plans (numpy) -----------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 4, 5])
def test_plan_alternates_and_the_data_side_layer_conditions_on_x0(layers):
    couplings = flows.flow_plan("realnvp", 3, layers=layers)
    ar = flows.flow_plan("maf", 3, layers=layers)
    for i, (c, a) in enumerate(zip(couplings, ar, strict=True)):
        j = layers - 1 - i  # from the data side
        np.testing.assert_array_equal(c.mask, np.arange(3) % 2 == j % 2)
        np.testing.assert_array_equal(a.order, [0, 1, 2] if j % 2 == 0 else [2, 1, 0])
    assert couplings[-1].mask[0] and ar[-1].order[0] == 0  # as zuko's and flowjax's layer 0
    assert len({layer.seed for layer in couplings}) == layers
    nice = flows.flow_plan("nice", 2, layers=layers)
    assert [layer.kind for layer in nice] == ["coupling"] * layers + ["diagonal_scaling"]
    assert {layer.direction for layer in flows.flow_plan("iaf", 2, layers=2)} == {"iaf"}


@pytest.mark.parametrize(
    ("name", "shape", "kw", "message"),
    [
        ("nope", (2,), {}, "unknown flow 'nope'"),
        ("realnvp", (2,), {"layers": 0}, "at least one layer"),
        ("glow", (2,), {}, "glow is an image flow: it needs image data"),
        ("realnvp_multiscale", (64,), {}, "image flow"),
        ("maf", (1, 8, 8), {}, "vector flow"),
        ("nsf", (2,), {"bound": 0.0}, "bound must be a finite number > 0"),
        ("nsf_ar", (2,), {"bound": -1.0}, "bound"),
        ("realnvp", (1,), {}, "needs D >= 2"),
        ("maf", (2,), {"hidden": ()}, "hidden widths"),
    ],
)
def test_bad_flow_settings_are_one_line_config_errors(name, shape, kw, message):
    settings = {"layers": 2, "hidden": (4,), **kw}
    for backend in (pm, nm):
        with pytest.raises(ConfigError, match=message) as info:
            backend.build_flow(name, shape, **settings)
        assert "\n" not in str(info.value)


# -- both backends: same weights, same numbers -------------------------------------------------


def test_fresh_flows_start_identical_on_both_backends(float64):
    for name in VECTOR:
        p = pm.build_flow(name, (3,), **SMALL).get_weights()
        n = nm.build_flow(name, (3,), **SMALL).get_weights()
        assert p.keys() == n.keys(), name
        for key in p:
            np.testing.assert_allclose(p[key], n[key], rtol=1e-12, atol=1e-12, err_msg=key)


def value(a):
    """A tensor or array as numpy."""
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


@pytest.mark.parametrize("name", VECTOR)
def test_log_prob_parity(float64, name):
    """log p(x) of the same weights agrees between the backends (1e-5, float64)."""
    p, n = pair(name)
    x = rows()
    lp_p = value(p.log_prob(torch.as_tensor(x)))
    np.testing.assert_allclose(lp_p, value(n.log_prob(jnp.asarray(x))), rtol=1e-5, atol=1e-5)
    assert np.isfinite(lp_p).all()


@pytest.mark.parametrize("name", VECTOR)
def test_gradient_parity(float64, name):
    """The gradient of the mean ``log p(x)`` with respect to every weight agrees between the
    backends on the same weights and rows (1e-6, float64): the two train alike, not only
    score alike."""
    p, n = pair(name)
    x = rows(50)
    p.log_prob(torch.as_tensor(x)).mean().backward()
    grads_p = {k: v.grad.numpy() for k, v in p.named_parameters()}
    params, static = eqx.partition(n.flow, eqx.is_inexact_array)

    def mean_log_p(params):
        density = nm.FlowDensity((2,), eqx.combine(params, static))
        return density.log_prob(jnp.asarray(x)).mean()

    # one compiled program (the trainer's way), not op-by-op eager dispatch
    grads_n = eqx.combine(jax.jit(jax.grad(mean_log_p))(params), static).get_weights()
    grads_n = {f"flow.{k}": v for k, v in grads_n.items()}
    assert grads_p.keys() == grads_n.keys()
    assert max(np.abs(g).max() for g in grads_p.values()) > 1e-3  # not all zero
    for key, g in grads_p.items():
        np.testing.assert_allclose(grads_n[key], g, rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("name", ["maf"])
def test_ppgen_estimators_are_exact_with_the_empty_guide(float64, name):
    """ppgen's trainer (its ELBO bound, with several particles too), the IWAE objective and
    the log-likelihood estimator, run on the flow's empty guide, give exactly log p(x)."""
    p, n = pair(name)
    x = rows()
    lp = value(p.log_prob(torch.as_tensor(x)))
    for inference, model, key in ((pi, p, None), (ni, n, jax.random.PRNGKey(0))):
        for objective in (inference.ELBO(), inference.ELBO(num_particles=3), inference.IWAE(4)):
            trainer = inference.Trainer(model.model, model.guide, objective, batch_size=10)
            got = trainer.evaluate(trainer.init(0, x), x)["elbo"]
            np.testing.assert_allclose(got, lp.mean(), rtol=1e-9, err_msg=type(objective).__name__)
        args = () if key is None else (key,)
        ll = inference.evaluate_log_likelihood(
            *args, model.model, model.guide, x, num_samples=3, chunk_size=2, batch_size=7
        )
        np.testing.assert_allclose(ll, lp, rtol=1e-9, atol=1e-9)


def test_exact_value_against_the_closed_form_gaussian(float64):
    """A one-layer NICE whose conditioner outputs a constant shift t (weights zero, last
    bias t) and whose scaling is s: x = ((z0, z1 + t) * exp(s)), a Gaussian N((0, t e^s1),
    diag(e^2s)) in closed form; the trainer's bound is its log-density."""
    t, s = 0.7, np.array([0.3, -0.4])
    x = rows(50)
    mean, cov = np.array([0.0, t * math.exp(s[1])]), np.diag(np.exp(2 * s))
    closed = multivariate_normal(mean, cov).logpdf(x)
    for backend, inference, model_cls in ((pm, pi, pm.FlowDensity), (nm, ni, nm.FlowDensity)):
        model = model_cls((2,), backend.build_flow("nice", (2,), layers=1, hidden=(4,)))
        w = {k: np.zeros(v.shape) for k, v in model.get_weights().items()}
        last_bias = max(k for k in w if k.endswith("bias"))
        w[last_bias] = np.array([t])
        w["flow.layers.1.log_scale"] = s
        model.set_weights(w)
        trainer = inference.Trainer(model.model, model.guide, inference.ELBO(), batch_size=10)
        got = trainer.evaluate(trainer.init(0, x), x)["elbo"]
        np.testing.assert_allclose(got, closed.mean(), rtol=1e-10)
        lp = model.log_prob(torch.as_tensor(x) if backend is pm else jnp.asarray(x))
        np.testing.assert_allclose(value(lp), closed, rtol=1e-10)


def test_pyro_substituted_params_score_as_set_weights(float64):
    """A handler that substitutes the flow's parameters (e.g. ``poutine.substitute``) scores
    the data with the substituted values, exactly as a model holding those weights."""
    p, _ = pair("realnvp")
    x = torch.as_tensor(rows())
    other = random_weights(p.get_weights(), seed=5)
    values = {k.replace("flow.", "flow$$$", 1): torch.as_tensor(v) for k, v in other.items()}
    trace = pyro_trace(ParamSubstituteMessenger(values)(p.model), x)
    p.set_weights(other)
    np.testing.assert_allclose(trace, p.log_prob(x).detach().numpy(), rtol=1e-10)


def pyro_trace(model, x):
    from pyro import poutine

    tr = poutine.trace(model).get_trace(x)
    tr.compute_log_prob()
    return tr.nodes["x"]["log_prob"].detach().numpy()


# -- training, conditional densities, samples -----------------------------------------------


def test_training_lowers_the_exact_nll_on_both_backends(float64):
    x = np.random.default_rng(1).standard_normal((256, 2)) * np.array([2.0, 0.3]) + 1.0
    for backend, inference in ((pm, pi), (nm, ni)):
        flow = backend.build_flow("realnvp", (2,), layers=2, hidden=(8,), seed=3)
        model = backend.FlowDensity((2,), flow)
        trainer = inference.Trainer(model.model, model.guide, inference.ELBO(), lr=1e-2,
                                    batch_size=64, num_data=len(x))  # fmt: skip
        state = trainer.init(0, x)
        before = trainer.evaluate(state, x)["elbo"]
        for epoch in range(6):
            state, _ = trainer.train_epoch(state, x, epoch)
        after = trainer.evaluate(state, x)["elbo"]
        assert after > before + 0.3
        bound = model.bind(trainer.params(state))
        lp = bound.log_prob(torch.as_tensor(x) if backend is pm else jnp.asarray(x))
        np.testing.assert_allclose(value(lp).mean(), after, rtol=1e-9)


@pytest.mark.parametrize("name", ["realnvp", "maf", "planar"])
def test_conditional_flow_density(float64, name):
    """p(x | y): parity of the same weights, the trainer's bound on (x, y) equals the exact
    log p(x | y), and the context matters."""
    p, n = pair(name, context_dim=3)
    x, y = rows(), np.eye(3)[np.arange(20) % 3]
    lp_p = value(p.log_prob(torch.as_tensor(x), torch.as_tensor(y)))
    lp_n = value(n.log_prob(jnp.asarray(x), jnp.asarray(y)))
    np.testing.assert_allclose(lp_p, lp_n, rtol=1e-5, atol=1e-5)
    other = p.log_prob(torch.as_tensor(x), torch.as_tensor(np.roll(y, 1, axis=1)))
    assert not np.allclose(other.detach().numpy(), lp_p)
    for inference, model in ((pi, p), (ni, n)):
        trainer = inference.Trainer(model.model, model.guide, inference.ELBO(), batch_size=10)
        got = trainer.evaluate(trainer.init(0, (x, y)), (x, y))["elbo"]
        np.testing.assert_allclose(got, lp_p.mean(), rtol=1e-9)
    assert p.sample(torch.as_tensor(y)).shape == (20, 2)
    assert n.sample(jax.random.PRNGKey(0), jnp.asarray(y)).shape == (20, 2)


@pytest.mark.parametrize("name", ["maf", "nice", "radial"])
def test_sample_path_goes_layer_by_layer_to_the_samples(float64, name):
    """sample_path: L + 1 arrays; each is the previous one through that layer; inverting
    the whole flow from the last gives the first (the base draws)."""
    p, n = pair(name)
    for model, path in (
        (p, [a.numpy() for a in pi.draw(p.sample_path, 50, seed=0)]),
        (n, ni.draw(n.sample_path, 50, seed=0)),
    ):
        transforms = model.flow.transforms()
        assert len(path) == len(transforms) + 1
        assert all(a.shape == (50, 2) for a in path)
        back = path[-1]
        for t in reversed(transforms):
            if model is p:
                back = t.inv(torch.as_tensor(back)).detach().numpy()
            else:
                back = np.asarray(t.inv(jnp.asarray(back)))
        np.testing.assert_allclose(back, path[0], atol=1e-6)
    assert pi.draw(p.sample, 7, seed=0).shape == (7, 2)
    assert ni.draw(n.sample, 7, seed=0).shape == (7, 2)


# -- bad data ---------------------------------------------------------------------------------


def test_bad_data_is_a_one_line_data_error(float64):
    p, n = pair("realnvp")
    for bad, message in ((rows(dim=3), r"needs \(batch, 2\)"), (rows()[:, :1], r"\(batch, 2\)")):
        with pytest.raises(DataError, match=message):
            p.log_prob(torch.as_tensor(bad))
        with pytest.raises(DataError, match=message):
            n.log_prob(jnp.asarray(bad))
    nan = rows()
    nan[3, 1] = np.nan
    for inference, model in ((pi, p), (ni, n)):
        trainer = inference.Trainer(model.model, model.guide, inference.ELBO(), batch_size=10)
        with pytest.raises(DataError, match="NaN") as info:
            trainer.init(0, nan)
        assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="NaN"):
        p.log_prob(torch.as_tensor(nan))
    with pytest.raises(DataError, match="NaN"):
        n.log_prob(jnp.asarray(nan))


def test_flow_density_refuses_a_flow_of_another_shape_or_kind():
    for backend in (pm, nm):
        flow = backend.build_flow("realnvp", (3,), layers=1, hidden=(4,))
        with pytest.raises(ConfigError, match=r"events of shape \(2,\)"):
            backend.FlowDensity((2,), flow)
        with pytest.raises(ConfigError, match="ConditionalFlowDensity"):
            backend.FlowDensity(
                (3,), backend.build_flow("realnvp", (3,), layers=1, hidden=(4,), context_dim=2)
            )
        with pytest.raises(ConfigError, match="unknown base"):
            backend.FlowDensity((3,), flow, base="laplace")
        with pytest.raises(ConfigError, match="takes no context"):
            flow.transforms(context=np.zeros((1, 2)))


def test_conditional_density_without_its_context_is_refused_in_one_line():
    """A conditional flow density scored on x alone (e.g. the log-likelihood estimator
    given rows but not their context) says what it needs, on both backends."""
    p, n = pair("maf", context_dim=3)
    x = rows()
    with pytest.raises(ConfigError, match=r"conditional, p\(x \| y\): pass the context"):
        pi.evaluate_log_likelihood(p.model, p.guide, x, num_samples=1)
    with pytest.raises(ConfigError, match=r"conditional, p\(x \| y\): pass the context"):
        ni.evaluate_log_likelihood(jax.random.PRNGKey(0), n.model, n.guide, x, num_samples=1)


# -- layers without an inverse, data of the wrong shape ---------------------------------------


def _forward_only_layers():
    """One forward-only layer of each kind the backends ship: Pyro's own planar (it inverts
    only values it produced), Pyro's NAF and NumPyro's BNAF (no inverse at all)."""
    import numpyro.distributions.flows as nflows
    import pyro.distributions.transforms as ptransforms
    from numpyro.nn import BlockNeuralAutoregressiveNN
    from pyro.nn import AutoRegressiveNN

    init, apply = BlockNeuralAutoregressiveNN(2)
    _, params = init(jax.random.PRNGKey(0), (2,))
    return {
        "pyro_planar": (pm, ptransforms.Planar(2)),
        "pyro_naf": (
            pm,
            ptransforms.NeuralAutoregressive(
                AutoRegressiveNN(2, [8], param_dims=[4, 4, 4]), hidden_units=4
            ),
        ),
        "numpyro_bnaf": (
            nm,
            nflows.BlockNeuralAutoregressiveTransform(lambda v: apply(params, v)),
        ),
    }


def test_a_layer_without_inverse_in_a_density_model_is_one_line_on_both_backends():
    """A density model scores data through the flow's inverse: a forward-only layer (good
    in a VAE's posterior flow) is refused where the model is built, in the same line on
    both backends, naming the layer and what to do (it was a KeyError traceback at Pyro's
    Trainer.init and a wrong "leading dimensions" hint on NumPyro)."""
    lines = {}
    for label, (backend, layer) in _forward_only_layers().items():
        name = f"{type(layer).__module__}.{type(layer).__qualname__}"
        # the forward-only layer sits between two invertible ones: layer 1 is named
        flow = backend.Flow([backend.Permutation([1, 0]), layer, backend.Permutation([1, 0])], (2,))
        with pytest.raises(ConfigError) as info:
            backend.FlowDensity((2,), flow)
        line = str(info.value)
        assert "\n" not in line
        assert f"layer 1 of the flow ({name}) has no inverse" in line, line
        assert "posterior flow" in line and "invertible transform" in line
        lines[label] = line.replace(name, "T")
    assert len(set(lines.values())) == 1, lines


def test_numpyro_trainer_does_not_blame_leading_dims_for_a_failing_log_prob():
    """A user's own NumPyro program observing data under a forward-only flow fails when
    its site is scored; the trainer's broadcasting hint must not claim the program fails
    only with particles (it fails alone too): NumPyro's own error comes through."""
    import numpyro
    import numpyro.distributions as ndist

    _, layer = _forward_only_layers()["numpyro_bnaf"]

    def model(x, num_data=None):
        numpyro.param("unused", jnp.zeros(()))
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            base = ndist.Normal(jnp.zeros(2), 1.0).to_event(1)
            numpyro.sample("x", ndist.TransformedDistribution(base, [layer]), obs=x)

    def guide(x, num_data=None):
        pass

    trainer = ni.Trainer(model, guide, ni.ELBO(), batch_size=10)
    with pytest.raises(NotImplementedError, match="inverse"):
        trainer.init(0, rows())


def test_the_data_shape_error_names_the_flows_event_shape():
    """Rows of the wrong width, or unflattened images, are refused naming the flow's
    event_shape (a flow has no x_dim to rebuild with)."""
    for backend in (pm, nm):
        vector = backend.FlowDensity((2,), backend.build_flow("realnvp", (2,), layers=1))
        image = backend.FlowDensity(
            (1, 8, 8), backend.build_flow("realnvp_multiscale", (1, 8, 8), layers=1, hidden=(4,))
        )
        array = torch.as_tensor if backend is pm else jnp.asarray
        for model, bad, message in (
            (vector, rows(dim=3), r"event_shape \(2,\); or build the flow with event_shape=\(3,\)"),
            (image, np.zeros((3, 1, 8, 8)), r"needs \(batch, 64\).*\(1, 8, 8\); flatten each"),
            (image, np.zeros((3, 63)), r"\(1, 8, 8\); or build the flow on events of 63 values"),
        ):
            with pytest.raises(DataError, match=message) as info:
                model.log_prob(array(np.asarray(bad, np.float32)))
            assert "x_dim" not in str(info.value)
