"""Generators and critics (``ppgen.models.{pyro,numpyro}.gan``): the mirror (same names and
signatures; with the Pyro weights copied into NumPyro, the same images, scores and weight
gradients, also through a gradient penalty), the model's sites, gradients reaching every
parameter, samples, and bad input refused in one line.

Every test runs in float64 (one dtype: JAX compiles each eager operation once per dtype and
shape) and the NumPyro side's numbers come from one compiled call per test.
"""

import copy

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_parity as mirror
import torch
from numpyro import handlers as nh
from pyro import poutine

import ppgen.models.numpyro.gan as gan_j
import ppgen.models.pyro.gan as gan_t
from ppgen.errors import ConfigError, DataError
from ppgen.models.numpyro.nets import load_net_weights as load_j
from ppgen.models.numpyro.nets import net_weights as weights_j
from ppgen.models.pyro.nets import net_weights as weights_t

pytestmark = pytest.mark.usefixtures("float64")

# float64 on both sides, the same weights and inputs: only the order of summation differs
# (measured ~1e-15), so a mismatch in layout, padding or conditioning shows far above this.
ATOL, RTOL = 1e-10, 1e-9
SMALL_DCGAN = dict(architecture="dcgan", hidden=(8, 4), z_dim=6)

GENERATORS = {
    "mlp_toy": dict(x_shape=(2,), output="identity"),
    "mlp_conditional": dict(x_shape=(5,), num_classes=3, hidden=(7, 6), z_dim=4),
    "dcgan": dict(x_shape=(784,), architecture="dcgan"),  # the defaults: (128, 64), z 64
    "dcgan_conditional": dict(x_shape=(1, 28, 28), num_classes=3, **SMALL_DCGAN),
}
CRITICS = {
    "mlp": ("MLPCritic", dict(x_dim=2), ()),
    "mlp_conditional": ("MLPCritic", dict(x_dim=2, num_classes=3, hidden=(5, 4)), ("y",)),
    "mlp_joint": ("MLPCritic", dict(x_dim=2, z_dim=3, activation="tanh"), ("z",)),
    "dcgan": ("DCGANCritic", dict(), ()),  # the defaults: 64 channels, (784,)
    "dcgan_conditional": ("DCGANCritic", dict(x_shape=(28, 28), channels=3, num_classes=3), ("y",)),
    "dcgan_joint": ("DCGANCritic", dict(channels=3, z_dim=3, hidden=5), ("z",)),
}
MODULES = {"pyro": gan_t, "numpyro": gan_j}


def to_t(a):
    a = np.asarray(a)
    return torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else torch.float64)


def to_j(a):
    return jnp.asarray(np.asarray(a))


def numpy(a):
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


def maybe(convert, a):
    return None if a is None else convert(a)


def labels(shape, rng):
    return rng.integers(0, 3, shape)


def critic_inputs(net, lead, extras, rng):
    """``x (*lead, *x_shape)`` and the extras ``y (*lead)`` / ``z (*lead, z_dim)``, numpy."""
    x = rng.uniform(size=(*lead, *net.x_shape))
    more = [labels(lead, rng) if e == "y" else rng.normal(size=(*lead, net.z_dim)) for e in extras]
    return [x, *more]


def generator_pair(kwargs):
    """The Pyro generator and its NumPyro twin holding the Pyro weights."""
    t, j = gan_t.Generator(**kwargs), gan_j.Generator(**kwargs)
    wt = t.get_weights()
    assert {k: v.shape for k, v in wt.items()} == {k: v.shape for k, v in j.get_weights().items()}
    j.set_weights(wt)
    return t, j


def critic_pair(name, kwargs):
    t, j = getattr(gan_t, name)(**kwargs), getattr(gan_j, name)(**kwargs)
    wt = weights_t(t)
    assert {k: v.shape for k, v in wt.items()} == {k: v.shape for k, v in weights_j(j).items()}
    return t, load_j(j, wt)


def grads_t(net, loss):
    """``loss(net)``'s gradient for every parameter, by torch name."""
    params = dict(net.named_parameters())
    grads = torch.autograd.grad(loss(net), list(params.values()))
    return {k: g.numpy() for k, g in zip(params, grads, strict=True)}


def assert_same_grads(g_t, g_j):
    assert set(g_t) == set(g_j)
    for key, value in g_t.items():
        assert np.abs(value).max() > 0, key  # the gradient reaches every parameter
        np.testing.assert_allclose(value, g_j[key], atol=ATOL, rtol=RTOL, err_msg=key)


# -- the mirror --------------------------------------------------------------------------------


def test_same_public_names_and_signatures(monkeypatch):
    """The house mirror guard (tests/test_parity.py) on this module pair; the NumPyro
    networks write ``__call__`` and their torch-named weights, as ``MLP`` and ``ConvNet`` do."""
    assert gan_t.__all__ == gan_j.__all__
    for name in ("MLPCritic", "DCGANCritic", "DCGANGenerator"):
        writes = {"__call__", "state_dict", "load_state_dict"}
        monkeypatch.setitem(mirror.NUMPYRO_WRITES, name, writes)
    mirror.test_same_public_names_and_signatures("models.gan")


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_agree_on_the_same_weights(kind):
    """The same images from the same ``z`` (and ``y``), by ``generate`` and at the model's
    ``"x"`` site, and the same weight gradients of ``sum(r * x)``."""
    t, j = generator_pair(GENERATORS[kind])
    rng = np.random.default_rng(0)
    # Leading dims (particles, batch) broadcast against the labels' (batch,).
    z = rng.normal(size=(2, 3, t.z_dim))
    y = labels(3, rng) if t.num_classes else None
    r = rng.normal(size=(2, 3, *t.x_shape))
    data = rng.uniform(size=(3, *t.x_shape))

    x_t = t.generate(to_t(z), maybe(to_t, y))
    site_t = poutine.trace(t.model).get_trace(to_t(data), maybe(to_t, y)).nodes
    g_t = grads_t(t.generator, lambda _: (t.generate(to_t(z), maybe(to_t, y)) * to_t(r)).sum())
    z_site = numpy(site_t["z"]["value"])

    def holding(net):
        """The NumPyro generator computing with ``net`` (traced inside ``jit``)."""
        twin = copy.copy(j)
        twin.generator = net
        return twin

    @eqx.filter_jit
    def numpyro_side(net):
        def loss(net):
            x = holding(net).generate(to_j(z), maybe(to_j, y))
            return (x * r).sum(), x

        (_, x), grads = jax.value_and_grad(loss, has_aux=True)(net)
        model = nh.seed(nh.substitute(holding(net).model, data={"z": to_j(z_site)}), 0)
        site = nh.trace(model).get_trace(to_j(data), maybe(to_j, y))["x"]["value"]
        return x, site, grads

    x_j, site_j, grads = numpyro_side(j.generator)
    assert x_t.shape == x_j.shape == (2, 3, *t.x_shape)
    np.testing.assert_allclose(numpy(x_t), numpy(x_j), atol=ATOL, rtol=0)
    # The model's deterministic "x" at the same z (NumPyro substitutes Pyro's draw).
    assert site_j.shape == data.shape
    np.testing.assert_allclose(numpy(site_t["x"]["value"]), numpy(site_j), atol=ATOL, rtol=0)
    assert_same_grads(g_t, weights_j(grads))
    if t.output == "sigmoid":
        assert 0 < numpy(x_t).min() and numpy(x_t).max() < 1


@pytest.mark.parametrize("kind", sorted(CRITICS))
def test_critics_agree_on_the_same_weights(kind):
    """One score per example, the same on both backends for any leading shape, and the same
    weight gradients of the scores' sum."""
    name, kwargs, extras = CRITICS[kind]
    t, j = critic_pair(name, kwargs)
    rng = np.random.default_rng(1)
    leads = [(4,), (2, 3)]
    inputs = [critic_inputs(t, lead, extras, rng) for lead in leads]
    scores_t = [t(*map(to_t, a)) for a in inputs]
    g_t = grads_t(t, lambda net: net(*map(to_t, inputs[0])).sum())

    @eqx.filter_jit
    def numpyro_side(net):
        scores = [net(*map(to_j, a)) for a in inputs]
        return scores, jax.grad(lambda net: net(*map(to_j, inputs[0])).sum())(net)

    scores_j, grads = numpyro_side(j)
    for lead, s_t, s_j in zip(leads, scores_t, scores_j, strict=True):
        assert s_t.shape == s_j.shape == lead
        np.testing.assert_allclose(numpy(s_t), numpy(s_j), atol=ATOL, rtol=0)
    assert_same_grads(g_t, weights_j(grads))


def test_weight_gradients_agree_through_gradient_penalties():
    """Second derivatives: NumPyro's transposed convolution has a hand-written gradient (a
    custom VJP), checked here against torch's differentiated again (a penalty on the
    generator's ``d/dz``); and the critic through WGAN-GP's penalty on ``d/dx``."""
    rng = np.random.default_rng(2)
    gen_t, gen_j = generator_pair(GENERATORS["dcgan_conditional"])
    z, y, r = rng.normal(size=(3, 6)), labels(3, rng), rng.normal(size=(3, 1, 28, 28))

    def gen_loss_t(net):
        zs, onehot = to_t(z).requires_grad_(), torch.eye(3, dtype=torch.float64)[to_t(y)]
        score = (net.call_concat(zs, onehot) * to_t(r)).sum()
        (g,) = torch.autograd.grad(score, zs, create_graph=True)
        return score + (g**2).sum()

    def gen_loss_j(net):
        def score(zs):
            return (net.call_concat(zs, jax.nn.one_hot(to_j(y), 3)) * r).sum()

        return score(to_j(z)) + (jax.grad(score)(to_j(z)) ** 2).sum()

    g_j = eqx.filter_jit(jax.grad(gen_loss_j))(gen_j.generator)
    assert_same_grads(grads_t(gen_t.generator, gen_loss_t), weights_j(g_j))

    crit_t, crit_j = critic_pair(*CRITICS["dcgan_conditional"][:2])
    x, y = rng.uniform(size=(3, 28, 28)), labels(3, rng)

    def penalty_t(net):
        xs = to_t(x).requires_grad_()
        (g,) = torch.autograd.grad(net(xs, to_t(y)).sum(), xs, create_graph=True)
        return ((g.flatten(1).norm(dim=1) - 1) ** 2).mean() + net(xs, to_t(y)).mean()

    def penalty_j(net):
        g = jax.grad(lambda v: net(v, to_j(y)).sum())(to_j(x))
        norm = jnp.sqrt((g.reshape(3, -1) ** 2).sum(1))
        return ((norm - 1) ** 2).mean() + net(to_j(x), to_j(y)).mean()

    g_j = eqx.filter_jit(jax.grad(penalty_j))(crit_j)
    assert_same_grads(grads_t(crit_t, penalty_t), weights_j(g_j))


# -- the model program -------------------------------------------------------------------------


def pyro_sites(model, x, y, num_data):
    tr = poutine.trace(model.model).get_trace(to_t(x), maybe(to_t, y), num_data)
    tr.compute_log_prob()  # the "data" plate fits every site's batch shape
    sites = {}
    for name, s in tr.nodes.items():
        if s["type"] == "sample" and name != "data":
            kind = "deterministic" if s["infer"].get("_deterministic") else "sample"
            sites[name] = (kind, tuple(s["value"].shape), s["is_observed"], s["fn"].event_dim)
    return sites, tr.nodes["z"]["scale"]


def numpyro_trace(fn, *args):
    """A NumPyro trace of ``fn(*args)`` with abstract values: shapes only, nothing compiled."""
    traces = []

    def run():
        traces.append(nh.trace(nh.seed(fn, 0)).get_trace(*args))
        return 0

    jax.eval_shape(run)
    return traces[0]


def numpyro_sites(model, x, y, num_data):
    trace = numpyro_trace(model.model, x, maybe(to_j, y), num_data)
    sites = {}
    for name, s in trace.items():
        if s["type"] == "sample":
            sites[name] = ("sample", s["value"].shape, s["is_observed"], s["fn"].event_dim)
        elif s["type"] == "deterministic":  # NumPyro's deterministic sites have no event dim
            sites[name] = ("deterministic", s["value"].shape, True, len(model.x_shape))
    return sites, trace["z"]["scale"]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("kind", ["mlp_toy", "dcgan_conditional"])
def test_model_sites_and_empty_guide(backend, kind):
    model = MODULES[backend].Generator(**GENERATORS[kind])
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(5, *model.x_shape))
    y = labels(5, rng) if model.num_classes else None
    sites_of = pyro_sites if backend == "pyro" else numpyro_sites
    sites, scale = sites_of(model, x, y, num_data=20)
    expected = {
        "z": ("sample", (5, model.z_dim), False, 1),
        "x": ("deterministic", x.shape, True, len(model.x_shape)),  # the data's shape
    }
    if y is not None:
        expected["y"] = ("sample", (5,), True, 0)
    assert sites == expected
    assert float(scale) == 4.0  # num_data / batch: the "data" plate
    if backend == "pyro":
        guide = poutine.trace(model.guide).get_trace(to_t(x), maybe(to_t, y)).nodes
        assert not [n for n, s in guide.items() if s["type"] in ("sample", "param")]
    else:
        assert nh.trace(nh.seed(model.guide, 0)).get_trace(to_j(x), maybe(to_j, y)) == {}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_gradients_reach_every_generator_parameter_through_the_site(backend):
    """As an objective sees the generator: its param sites, and ``"x"`` read off a trace."""
    model = MODULES[backend].Generator(**GENERATORS["dcgan_conditional"])
    rng = np.random.default_rng(4)
    x, y = np.zeros((3, *model.x_shape)), labels(3, rng)
    r = rng.normal(size=x.shape)
    if backend == "pyro":
        with poutine.trace(param_only=True) as params:
            model.model(to_t(x), to_t(y))
        sites = {n: s["value"] for n, s in params.trace.nodes.items()}
        assert sorted(n.replace("$$$", ".") for n in sites) == sorted(model.get_weights())
        loss = (
            poutine.trace(model.model).get_trace(to_t(x), to_t(y)).nodes["x"]["value"] * to_t(r)
        ).sum()
        found = torch.autograd.grad(loss, list(sites.values()))
        grads = {n.replace("$$$", "."): g.numpy() for n, g in zip(sites, found, strict=True)}
    else:
        sites = numpyro_trace(model.model, to_j(x), to_j(y))
        assert [n for n, s in sites.items() if s["type"] == "param"] == ["generator$params"]
        params = {"generator$params": eqx.filter(model.generator, eqx.is_inexact_array)}

        @jax.jit
        def grad(params):
            def loss(params):
                m = nh.seed(nh.substitute(model.model, data=params), 0)
                return (nh.trace(m).get_trace(to_j(x), to_j(y))["x"]["value"] * r).sum()

            return jax.grad(loss)(params)

        net = eqx.combine(grad(params)["generator$params"], model.generator)
        grads = {f"generator.{k}": v for k, v in weights_j(net).items()}
    assert set(grads) == set(model.get_weights())
    for key, g in grads.items():
        assert np.abs(g).max() > 0, key


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_samples(backend):
    mod = MODULES[backend]

    def draw(model, *args):
        if backend == "pyro":
            return numpy(model.sample(*args))
        return numpy(model.sample(jax.random.PRNGKey(0), *args))

    toy = mod.Generator((2,), output="identity")
    assert toy.z_dim == 2 and draw(toy, 4).shape == (4, 2)
    assert mod.Generator((1, 4, 4)).z_dim == 64  # the default but for 2-D data
    # An MLP on small images; z of the toy's width: one shape of draws, compiled once.
    images = mod.Generator((1, 4, 4), z_dim=2, num_classes=3, hidden=(5,))
    x = draw(images, 4)  # classes 0, 1, 2, 0 in turn
    assert x.shape == (4, 1, 4, 4) and 0 < x.min() and x.max() < 1
    assert draw(images, 4, 1).shape == (4, 1, 4, 4)
    with pytest.raises(DataError, match="unconditional") as error:
        draw(toy, 4, 1)
    one_line(error)


# -- bad input: one line each ------------------------------------------------------------------


def one_line(error):
    assert "\n" not in str(error.value), str(error.value)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(architecture="resnet"), "architecture"),
        (dict(output="tanh"), "output"),
        (dict(architecture="dcgan"), "28x28"),  # x_shape (2,) is not an image
        (dict(num_classes=1), "num_classes"),
        (dict(z_dim=0), "z_dim"),
        (dict(architecture="dcgan", x_shape=(784,), hidden=(8,)), "channel"),
    ],
)
def test_bad_generator_options(backend, kwargs, match):
    kwargs = {"x_shape": (2,), **kwargs}
    with pytest.raises(ConfigError, match=match) as error:
        MODULES[backend].Generator(**kwargs)
    one_line(error)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("MLPCritic", dict(x_dim=2, activation="swish"), "activation"),
        ("MLPCritic", dict(x_dim=2, hidden=(4, 0)), "hidden"),
        ("DCGANCritic", dict(x_shape=(2,)), "28x28"),
        ("DCGANCritic", dict(num_classes=0), "num_classes"),
        ("MLPCritic", dict(x_dim=2, input_scale=0.0), "input_scale"),
        ("DCGANCritic", dict(input_scale=float("nan")), "input_scale"),
    ],
)
def test_bad_critic_options(backend, name, kwargs, match):
    with pytest.raises(ConfigError, match=match) as error:
        getattr(MODULES[backend], name)(**kwargs)
    one_line(error)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_bad_data_and_labels(backend):
    mod, arr = MODULES[backend], (to_t if backend == "pyro" else to_j)

    def run(model, x, y=None):
        if backend == "pyro":
            return poutine.trace(model.model).get_trace(arr(x), maybe(arr, y))
        return nh.trace(nh.seed(model.model, 0)).get_trace(arr(x), maybe(arr, y))

    cond = mod.Generator((3,), num_classes=3, hidden=(4,), z_dim=2)
    cases = [
        (mod.Generator((2,)), np.zeros((4, 3)), None, "shape"),  # wrong data shape
        (mod.Generator((784,), **SMALL_DCGAN), np.zeros((4, 1, 28, 28)), None, "shape"),
        (cond, np.zeros((4, 3)), None, "pass the labels"),
        (cond, np.zeros((4, 3)), np.array([0, 1, 2, 3]), "lie in 0..2"),
        (cond, np.zeros((4, 3)), np.array([0, 1, 2]), "one label per example"),
        (cond, np.zeros((4, 3)), np.array([0.0, 1, 2, 1]), "integer"),
        (mod.Generator((2,)), np.zeros((4, 2)), np.array([0, 1, 1, 0]), "unconditional"),
    ]
    for model, x, y, match in cases:
        with pytest.raises(DataError, match=match) as error:
            run(model, x, y)
        one_line(error)
    for z, y, match in [(np.zeros((2, 2)), [0, 5], "lie in 0..2"), (np.zeros((2, 3)), [0, 1], "z")]:
        with pytest.raises(DataError, match=match) as error:
            cond.generate(arr(z), arr(np.array(y)))
        one_line(error)
    critic = mod.DCGANCritic(channels=2, num_classes=3)
    with pytest.raises(ConfigError, match=r"critic\(x, y\)") as error:
        critic(arr(np.zeros((2, 784))))
    one_line(error)
    with pytest.raises(DataError, match="shape") as error:
        critic(arr(np.zeros((2, 28, 28))), arr(np.array([0, 1])))
    one_line(error)
    with pytest.raises(DataError, match="integer") as error:
        mod.MLPCritic(2, num_classes=3)(arr(np.zeros((2, 2))), arr(np.array([0.0, 1.0])))
    one_line(error)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize("name", ["MLPCritic", "DCGANCritic"])
def test_input_scale_scores_the_scaled_input(backend, name):
    """``input_scale=s`` scores ``s x`` with the same weights (Flow-GAN's critic sees a
    flow's dequantised pixels ``k + u`` as ``(k + u) / L``)."""
    kwargs = dict(x_dim=6, hidden=(8,)) if name == "MLPCritic" else dict(channels=2)
    make = getattr(MODULES[backend], name)
    plain, scaled = make(seed=4, **kwargs), make(seed=4, input_scale=0.25, **kwargs)
    x = np.random.default_rng(3).uniform(0, 4, size=(3, 6 if name == "MLPCritic" else 784))
    conv = to_t if backend == "pyro" else to_j
    out = numpy(scaled(conv(x)))
    np.testing.assert_allclose(out, numpy(plain(conv(0.25 * x))), rtol=1e-6, atol=1e-7)
    assert not np.allclose(out, numpy(plain(conv(x))))
