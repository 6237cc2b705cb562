"""Image flows (ppgen.models.{pyro,numpyro}.image_flows): Glow's pieces, RealNVP's
preprocessing and multi-scale builders, on both backends in float64.

Every transform is checked for the issue's bars over batch shapes (), (3,), (2, 3): round trip,
log-det against the autodiff Jacobian, ``TransformedDistribution.log_prob`` against the
change of variables, parity of the two backends on the same weights, and 10,000 fuzzed
inputs with extreme weights. The bits/dim test checks the dequantisation accounting against
values computed by hand.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as ndist
import pyro.distributions as pdist
import pytest
import torch

from ppgen.errors import ConfigError, DataError
from ppgen.metrics import bits_per_dim
from ppgen.models import image_flows as plans
from ppgen.models.masks import checkerboard_mask
from ppgen.models.numpyro import coupling as ncoupling
from ppgen.models.numpyro import image_flows as nflows
from ppgen.models.pyro import coupling as pcoupling
from ppgen.models.pyro import image_flows as pflows


class Pyro:
    name = "pyro"
    flows, coupling, dist = pflows, pcoupling, pdist

    def array(self, a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float64)

    def numpy(self, a):
        return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)

    def forward(self, t, x):
        return self.numpy(t(self.array(x)))

    def inverse(self, t, y):
        return self.numpy(t.inv(self.array(y)))  # a new tensor: never torch's cached pair

    def ladj(self, t, x):
        x = self.array(x)
        return self.numpy(t.log_abs_det_jacobian(x, t(x)))

    def jacobians(self, t, x):
        """``dy/dx`` of each event of ``x (N, *event)``, ``(N, *event, *event)``."""
        jac = torch.func.vmap(torch.func.jacrev(lambda a: t(a)))(self.array(x))
        return self.numpy(jac)

    def set(self, t, weights):
        return t.set_weights(weights)

    def jit(self, fn):
        return fn  # Pyro runs eagerly

    def normal(self, shape):
        return pdist.Normal(torch.zeros(shape, dtype=torch.float64), 1.0).to_event(len(shape))


class NumPyro:
    name = "numpyro"
    flows, coupling, dist = nflows, ncoupling, ndist

    def array(self, a):
        return jnp.asarray(np.asarray(a), dtype=jnp.float64)

    def numpy(self, a):
        return np.asarray(a)

    # Compiled: one compilation per transform structure and shape (the transforms are
    # pytrees) costs less than running op by op, each operation compiled for its shapes.
    _forward = staticmethod(jax.jit(lambda t, x: t(x)))
    _inverse = staticmethod(jax.jit(lambda t, y: t.inv(y)))
    _ladj = staticmethod(jax.jit(lambda t, x: t.log_abs_det_jacobian(x, t(x))))

    def forward(self, t, x):
        return self.numpy(self._forward(t, self.array(x)))

    def inverse(self, t, y):
        return self.numpy(self._inverse(t, self.array(y)))

    def ladj(self, t, x):
        return self.numpy(self._ladj(t, self.array(x)))

    _jacobians = staticmethod(jax.jit(jax.vmap(jax.jacfwd(lambda t, a: t(a), 1), (None, 0))))

    def jacobians(self, t, x):
        """``dy/dx`` of each event of ``x (N, *event)``, ``(N, *event, *event)``."""
        return self.numpy(self._jacobians(t, self.array(x)))

    def set(self, t, weights):
        return t.set_weights(weights)

    def jit(self, fn):
        return jax.jit(fn)  # one compilation of the whole flow, not one per operation

    def normal(self, shape):
        return ndist.Normal(jnp.zeros(shape), 1.0).to_event(len(shape))


SIDES = {"pyro": Pyro(), "numpyro": NumPyro()}


def conv_coupling(side, mask):
    c = mask.shape[0]
    affine = side.coupling.Affine()
    return side.coupling.Coupling(mask, side.flows.ConvNet(c, 2 * c, 4, 0, seed=3), affine)


def glownet_coupling(side, mask):
    c = mask.shape[0]
    affine = side.coupling.Affine()
    return side.coupling.Coupling(mask, side.flows.GlowNet(c, 2 * c, 4, seed=3), affine)


# name -> (build(side), event shape, domain: "real", "unit" or "pixels", fuzz weight scale).
# Glow's fuzz weights are milder: its 16-channel 1x1 convolution with random L, U entries of
# a third (scale 3 / sqrt(16)) and log-diagonals of +-6 has a condition number past 1e16,
# which no float64 inverse survives; trained ones stay near their initial rotation.
CASES = {
    "actnorm": (lambda s: s.flows.ActNorm(3), (3, 4, 4), "real", 3.0),
    "actnorm_vector": (lambda s: s.flows.ActNorm(5, event_dim=1), (5,), "real", 3.0),
    "conv1x1": (lambda s: s.flows.Invertible1x1Conv(3, seed=1), (3, 4, 4), "real", 3.0),
    "squeeze": (lambda s: s.flows.Squeeze(), (2, 4, 4), "real", 3.0),
    "dequantize": (lambda s: s.flows.Dequantize(), (2, 3, 3), "pixels", 3.0),
    "logit": (lambda s: s.flows.Logit(0.05), (2, 3, 3), "unit", 3.0),
    "logit_vector": (lambda s: s.flows.Logit(1e-3, event_dim=1), (6,), "unit", 3.0),
    "squeezed": (
        lambda s: s.flows.Squeezed([s.flows.Invertible1x1Conv(8, seed=2), s.flows.ActNorm(8)]),
        (2, 4, 4),
        "real",
        3.0,
    ),
    "factor_out": (
        lambda s: s.flows.FactorOut([s.flows.ActNorm(2), s.flows.Invertible1x1Conv(2)], 2),
        (4, 2, 2),
        "real",
        3.0,
    ),
    "coupling": (lambda s: conv_coupling(s, checkerboard_mask((2, 4, 4))), (2, 4, 4), "real", 3.0),
    "coupling_glownet": (
        lambda s: glownet_coupling(s, checkerboard_mask((2, 4, 4))),
        (2, 4, 4),
        "real",
        3.0,
    ),
    # The builders' lists as one transform (a FactorOut keeping all but a spare channel).
    "realnvp": (
        lambda s: s.flows.FactorOut(
            s.flows.multiscale_realnvp((1, 4, 4), scales=1, steps=1, hidden=4, blocks=0), 1
        ),
        (2, 4, 4),
        "real",
        3.0,
    ),
    # Glow with the residual conditioner (its builder's default until 2026-12-03) and with
    # its own (GlowNet).
    "glow": (
        lambda s: s.flows.FactorOut(
            s.flows.glow(
                (1, 4, 4), scales=2, steps=1, hidden=4, blocks=0, seed=5, conditioner="resnet"
            ),
            1,
        ),
        (2, 4, 4),
        "real",
        1.0,
    ),
    "glow_glownet": (
        lambda s: s.flows.FactorOut(
            s.flows.glow((1, 4, 4), scales=2, steps=1, hidden=4, seed=5), 1
        ),
        (2, 4, 4),
        "real",
        1.0,
    ),
}
BATCHES = [(), (3,), (2, 3)]
FLOWS = (
    "realnvp",
    "glow",
    "glow_glownet",
)  # made of the pieces above, checked at one batch shape (speed)
ROUND_TRIPS = [
    (name, batch)
    for name in sorted(CASES)
    for batch in (BATCHES if name not in FLOWS else [(2, 3)])
]


def random_weights(transform, rng, scale):
    """Every parameter moved from its initial value (last layers start at zero) by normal
    noise of standard deviation ``scale`` for vectors (biases, log-scales) and
    ``scale / sqrt(fan_in)`` for matrices and kernels, so a network's output keeps its input's
    size and a 1x1 convolution's ``L``, ``U`` stay as well conditioned as trained ones (random
    triangular matrices with O(1) entries have condition numbers exponential in ``C``)."""
    out = {}
    for k, v in transform.get_weights().items():
        std = scale / math.sqrt(math.prod(v.shape[1:])) if v.ndim > 1 else scale
        out[k] = v + std * rng.standard_normal(v.shape)
    return out


def build_pair(name, seed=0, scale=1.0):
    """The case's transform on both backends, holding the same random weights."""
    build = CASES[name][0]
    out = {}
    weights = None
    for key, side in SIDES.items():
        t = build(side)
        if weights is None:
            weights = random_weights(t, np.random.default_rng(seed), scale)
        out[key] = side.set(t, weights)
    return out


def inputs(name, shape, rng, wide=False):
    """Inputs in the case's domain; ``wide``: |x| spread up to 1e4 (reals)."""
    domain = CASES[name][2]
    if domain == "unit":
        x = rng.uniform(0.0, 1.0, shape)
        if wide:  # the end points and their neighbours
            edges = np.array([0.0, 1.0, 1e-300, 1 - 1e-16, 1e-12, 1 - 1e-12])
            x.reshape(-1)[: edges.size * 100] = np.tile(edges, 100)
        return x
    if domain == "pixels":
        x = rng.uniform(0.0, 256.0, shape)
        if wide:
            x.reshape(-1)[:200] = np.tile([0.0, 255.999999], 100)
        return x
    x = rng.standard_normal(shape)
    if wide:
        x = x * 10.0 ** rng.uniform(-3, 4, shape)
    return x


@pytest.fixture(params=sorted(SIDES))
def side(request):
    return SIDES[request.param]


@pytest.mark.parametrize(("name", "batch"), ROUND_TRIPS, ids=str)
def test_round_trip(float64, side, name, batch):
    """inverse(forward(x)) = x (1e-5), the log-det of shape ``batch``."""
    t = build_pair(name)[side.name]
    x = inputs(name, batch + CASES[name][1], np.random.default_rng(1))
    np.testing.assert_allclose(side.inverse(t, side.forward(t, x)), x, atol=1e-5, rtol=1e-5)
    assert side.ladj(t, x).shape == batch


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_det_is_the_jacobian_log_det(float64, side, name):
    """``log_abs_det_jacobian`` = log|det| of the autodiff Jacobian (1e-4), event by event."""
    t = build_pair(name)[side.name]
    event = CASES[name][1]
    x = inputs(name, (2, 3) + event, np.random.default_rng(1))
    n = math.prod(event)
    jac = side.jacobians(t, x.reshape(-1, *event)).reshape(-1, n, n)
    _, logdet = np.linalg.slogdet(jac)
    np.testing.assert_allclose(side.ladj(t, x).reshape(-1), logdet, atol=1e-4, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_transformed_distribution_log_prob(float64, side, name):
    """``log_prob(y) = log p_base(f^{-1}(y)) - log|det J_f(f^{-1}(y))|``."""
    t = build_pair(name)[side.name]
    event = CASES[name][1]
    x = inputs(name, (2, 3) + event, np.random.default_rng(2))
    y = side.forward(t, x)
    base = side.normal(event)

    def log_probs(t, y, x_back):
        flow = side.dist.TransformedDistribution(base, [t])
        return flow.log_prob(y), base.log_prob(x_back)

    x_back = side.inverse(t, y)
    got, base_log_prob = side.jit(log_probs)(t, side.array(y), side.array(x_back))
    got = side.numpy(got)
    want = side.numpy(base_log_prob) - side.ladj(t, x_back)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-8)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("name", sorted(CASES))
def test_backends_agree(float64, name):
    """Same weights -> same forward, inverse and log-det on both backends (1e-5)."""
    pair = build_pair(name)
    event = CASES[name][1]
    x = inputs(name, (2, 3) + event, np.random.default_rng(3))
    p, n = SIDES["pyro"], SIDES["numpyro"]
    y = p.forward(pair["pyro"], x)
    np.testing.assert_allclose(n.forward(pair["numpyro"], x), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        n.inverse(pair["numpyro"], y), p.inverse(pair["pyro"], y), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        n.ladj(pair["numpyro"], x), p.ladj(pair["pyro"], x), rtol=1e-5, atol=1e-5
    )
    assert sorted(pair["pyro"].get_weights()) == sorted(pair["numpyro"].get_weights())


def fuzz(side, name):
    """10,000 inputs (|x| from 1e-3 to 1e4, the domain's end points) through the case with
    its extreme weights: ``(all finite, normwise relative round-trip error per event)``,
    ``max |x' - x| / max(1, max |x|)`` over each event (a coupling's shift, and so its
    rounding, scales with the other pixels' size)."""
    _, event, _, scale = CASES[name]
    t = build_pair(name, seed=0, scale=scale)[side.name]
    x = inputs(name, (10_000, *event), np.random.default_rng(0), wide=True)
    if CASES[name][2] == "real":  # fixed extremes: +-1e4 everywhere, alternating, one pixel
        x[0], x[1] = 1e4, -1e4
        x[2] = np.where(np.arange(x[2].size).reshape(event) % 2, 1e4, -1e4)
        x[3] = 1e-3
        x[3].reshape(-1)[0] = 1e4
    y = side.forward(t, x)
    x_back = side.inverse(t, y)
    ladj = side.ladj(t, x)
    finite = np.isfinite(y).all() and np.isfinite(x_back).all() and np.isfinite(ladj).all()
    flat = x.reshape(len(x), -1)
    err = np.abs(x_back.reshape(len(x), -1) - flat).max(-1) / np.maximum(1.0, np.abs(flat).max(-1))
    return finite, err


# The worst rows of test_fuzz (seed 0) over both backends when recorded, and the largest of
# their errors: fixed examples that must stay within 10 times that (or 1e-12).
WORST = {
    "conv1x1": ([3494, 7276], 3.2e-14),
    "factor_out": ([6459, 9287], 2.2e-12),
    "glow": ([6477, 9179], 8.5e-11),
    "realnvp": ([3307, 267], 1.7e-8),
    "squeezed": ([3360, 4904], 4.0e-11),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuzz(float64, side, name):
    finite, err = fuzz(side, name)
    assert finite
    assert err.max() < 1e-4, (name, np.argsort(err)[-3:], err[np.argsort(err)[-3:]])
    if name in WORST:
        rows, recorded = WORST[name]
        assert np.all(err[rows] <= max(10 * recorded, 1e-12))


def preprocessed(side, transforms, alpha):
    """``transforms`` followed by RealNVP's preprocessing, in noise-to-data order."""
    return [*transforms, side.flows.Logit(alpha).inv, side.flows.Dequantize().inv]


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_bits_per_dim_of_a_uniform_model(float64, side, alpha):
    """A Logistic base pushed through ``Logit(alpha).inv`` is uniform on ``[-alpha, 1 + alpha]
    / (1 - 2 alpha)``, density ``(1 - 2 alpha)^D``; ``Dequantize().inv`` spreads it over
    ``[0, 256)``: ``log p(x + u) = D log(1 - 2 alpha) - D log 256``, i.e. 8 bits/dim for
    alpha = 0, the uniform model of 8-bit data, whatever the pixels."""
    shape = (1, 4, 4)
    d = math.prod(shape)
    base = side.dist.Logistic(side.array(np.zeros(shape)), 1.0).to_event(3)
    log_prob = side.jit(lambda x: side.dist.TransformedDistribution(base, transforms).log_prob(x))
    transforms = preprocessed(side, [], alpha)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5, *shape))
    x = side.flows.Dequantize().add_noise(
        *([] if side.name == "pyro" else [jax.random.key(0)]), pixels
    )
    log_p = side.numpy(log_prob(x))
    np.testing.assert_allclose(log_p, d * math.log(1 - 2 * alpha) - d * math.log(256), rtol=1e-12)
    np.testing.assert_allclose(bits_per_dim(-log_p, d), 8 - math.log2(1 - 2 * alpha), rtol=1e-12)


# The image-flow builders with small conditioners: RealNVP's and Glow's residual nets without
# residual blocks, and Glow's own GlowNet.
BUILDERS = {
    "realnvp": ("multiscale_realnvp", {"blocks": 0}),
    "glow_resnet": ("glow", {"blocks": 0, "conditioner": "resnet"}),
    "glow": ("glow", {}),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_bits_per_dim_through_a_fresh_flow(float64, side, name):
    """A fresh flow is the identity (RealNVP) or a rotation (Glow's 1x1 convolutions), so the
    whole model's log-density of dequantised pixels is the standard Normal's at
    ``logit(alpha + (1 - 2 alpha) v)``, ``v = (x + u) / 256``, plus the logit's and the
    dequantisation's log-Jacobians: computed here by hand in numpy, and the bits/dim of the
    model are the papers' ``(-log p(v) + D log 256) / (D log 2)``."""
    shape, alpha = (1, 8, 8), 0.05
    d = math.prod(shape)
    builder, kwargs = BUILDERS[name]
    transforms = getattr(side.flows, builder)(shape, steps=1, hidden=4, **kwargs)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, *shape)) + rng.uniform(0, 1, (2, *shape))  # dequantised

    def log_prob(transforms, x):
        flow = side.dist.TransformedDistribution(side.normal(shape), transforms)
        return flow.log_prob(x)

    log_p = side.numpy(side.jit(log_prob)(preprocessed(side, transforms, alpha), side.array(x)))
    v = x / 256
    p = alpha + (1 - 2 * alpha) * v
    z = np.log(p) - np.log1p(-p)
    log_normal = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).reshape(2, -1).sum(-1)
    log_dlogit = (math.log(1 - 2 * alpha) - np.log(p) - np.log1p(-p)).reshape(2, -1).sum(-1)
    log_p_v = log_normal + log_dlogit  # density of v in [0, 1]^D
    np.testing.assert_allclose(log_p, log_p_v - d * math.log(256), rtol=1e-10)
    want = (-log_p_v + d * math.log(256)) / (d * math.log(2))
    np.testing.assert_allclose(bits_per_dim(-log_p, d), want, rtol=1e-10)
    np.testing.assert_allclose(plans.dequantized_bits_per_dim(log_p_v, d), want, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_mnist_flows_agree_across_backends(float64, name):
    """The RealNVP and Glow builders on 28x28 MNIST images, same random weights: the same
    ``TransformedDistribution.log_prob`` on both backends (1e-5), gradients reaching every
    Pyro parameter, and the flow changing shape nowhere (base Normal over (1, 28, 28))."""
    shape = (1, 28, 28)
    builder, kwargs = BUILDERS[name]
    flows = {}
    for key, side in SIDES.items():
        flows[key] = getattr(side.flows, builder)(shape, steps=1, hidden=4, seed=2, **kwargs)
    rng = np.random.default_rng(2)
    weights = [random_weights(t, rng, 0.5) for t in flows["pyro"]]
    x = rng.standard_normal((3, *shape))
    log_p = {}
    for key, side in SIDES.items():
        transforms = [side.set(t, w) for t, w in zip(flows[key], weights, strict=True)]

        def log_prob(transforms, x, side=side):
            return side.dist.TransformedDistribution(side.normal(shape), transforms).log_prob(x)

        log_p[key] = side.jit(log_prob)(transforms, side.array(x))
    np.testing.assert_allclose(
        np.asarray(log_p["numpyro"]), log_p["pyro"].detach().numpy(), rtol=1e-5, atol=1e-5
    )
    params = [p for t in flows["pyro"] for p in t.parameters()]
    grads = torch.autograd.grad(log_p["pyro"].sum(), params)
    assert all(torch.any(g != 0) for g in grads)


def test_numpyro_flows_are_pytrees(float64):
    """NumPyro image transforms are pytrees whose floating leaves are exactly their weights
    (the permutation and signs of a 1x1 convolution are integers, which an optimiser of
    ``eqx.is_inexact_array`` leaves alone); ``jax.jit`` takes them as arguments (the Jacobian
    test above runs them so)."""
    transforms = nflows.glow((1, 4, 4), scales=2, steps=1, hidden=4)
    leaves = jax.tree_util.tree_leaves(transforms)
    floating = [a for a in leaves if jnp.issubdtype(a.dtype, jnp.floating)]
    assert len(floating) == sum(len(t.get_weights()) for t in transforms)
    assert sum(a.size for a in floating) == sum(
        v.size for t in transforms for v in t.get_weights().values()
    )
    rebuilt = jax.tree_util.tree_map(lambda a: a, transforms)
    assert [type(t) for t in rebuilt] == [type(t) for t in transforms]


def test_actnorm_data_dependent_initialisation(float64, side):
    """After ``initialize(y)`` the inverse maps the batch to zero mean, unit variance per
    channel (images) or feature (vectors)."""
    rng = np.random.default_rng(4)
    y = 3.0 + 2.0 * rng.standard_normal((10, 3, 4, 4)) * np.array([1.0, 5.0, 0.1])[:, None, None]
    t = side.flows.ActNorm(3).initialize(side.array(y))
    z = side.inverse(t, y)
    np.testing.assert_allclose(z.mean((0, 2, 3)), 0.0, atol=1e-10)
    np.testing.assert_allclose(z.std((0, 2, 3)), 1.0, atol=1e-5)
    v = rng.standard_normal((50, 5)) * 4.0 - 1.0
    z = side.inverse(side.flows.ActNorm(5, event_dim=1).initialize(side.array(v)), v)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-5)


def test_initialize_flow_is_the_same_on_both_backends(float64):
    """Glow's data-dependent initialisation of every ActNorm, nested in the multi-scale
    wrappers, gives both backends the same weights; the data-side ActNorm normalises."""
    shape = (1, 4, 4)
    y = np.random.default_rng(5).uniform(-3, 5, (16, *shape))
    out = {}
    for key, side in SIDES.items():
        transforms = side.flows.glow(shape, scales=2, steps=1, hidden=2)
        out[key] = side.jit(side.flows.initialize_flow)(transforms, side.array(y))
    for tp, tn in zip(out["pyro"], out["numpyro"], strict=True):
        wp, wn = tp.get_weights(), tn.get_weights()
        for k in wp:
            np.testing.assert_allclose(wn[k], wp[k], rtol=1e-7, atol=1e-10)
    # The first level's first step's ActNorm (the last in noise-to-data order) sees the data.
    first_actnorm = out["numpyro"][0].parts[-1]
    assert isinstance(first_actnorm, nflows.ActNorm)
    squeezed = nflows.squeeze(jnp.asarray(y))
    np.testing.assert_allclose(first_actnorm.loc, squeezed.mean((0, 2, 3)), rtol=1e-10)


def test_bad_inputs_get_one_line_errors(float64, side):
    f = side.flows
    key = [] if side.name == "pyro" else [jax.random.key(0)]
    for bad in ([0.5, 1.0], [0, 256], [-1, 3], [np.nan, 1.0], np.full((2, 2), 0.3)):
        with pytest.raises(DataError, match="8-bit") as err:
            f.Dequantize().add_noise(*key, np.asarray(bad))
        assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="even height and width"):
        f.Squeeze()(side.array(np.zeros((2, 1, 7, 8))))
    with pytest.raises(DataError, match="channels"):
        f.ActNorm(3)(side.array(np.zeros((2, 1, 4, 4))))
    with pytest.raises(DataError, match="C = 3"):
        f.Invertible1x1Conv(3)(side.array(np.zeros((2, 2, 4, 4))))
    with pytest.raises(ConfigError, match="alpha"):
        f.Logit(0.5)
    with pytest.raises(ConfigError, match="multiples of 8"):
        f.multiscale_realnvp((1, 28, 28), scales=3)
    with pytest.raises(ConfigError, match=r"\(C, H, W\)"):
        f.glow((784,))
    with pytest.raises(ConfigError, match="scales"):
        f.glow((1, 28, 28), scales=0)
    with pytest.raises(ConfigError, match="blocks sets the residual blocks"):
        f.glow((1, 28, 28), blocks=1)  # Glow's own conditioner has none
    with pytest.raises(ConfigError, match="unknown conditioner 'mlp'"):
        f.multiscale_realnvp((1, 28, 28), conditioner="mlp")
    with pytest.raises(ConfigError, match="3 convolutions need 3 kernel sizes"):
        plans.conv_weights((2, 4, 4, 2), kernel_size=(3, 1))
    with pytest.raises(ConfigError, match="steps"):
        f.multiscale_realnvp((1, 28, 28), steps=0)
    with pytest.raises(ConfigError, match="event_dim"):
        f.ActNorm(3, event_dim=2)


def test_8bit_data_pass_the_check(side):
    key = [] if side.name == "pyro" else [jax.random.key(0)]
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for x in (pixels, pixels.astype(np.float32), pixels.astype(np.int64)):
        noisy = side.numpy(side.flows.Dequantize().add_noise(*key, x))
        assert np.all((noisy >= pixels) & (noisy < pixels + 1.0))


def test_dequantize_of_other_grey_levels(float64, side):
    """``Dequantize(levels=L)``: ``y = (x + u) / L``, log-det ``-D log L`` (digits: L = 17),
    its data check on ``0..L-1``; a bad ``levels`` is one line."""
    key = [] if side.name == "pyro" else [jax.random.key(0)]
    t = side.flows.Dequantize(event_dim=1, levels=17)
    x = np.arange(17.0)[None] + 0.5  # (1, 17)
    y = side.numpy(t(side.array(x)))
    np.testing.assert_allclose(y, x / 17, rtol=1e-12)
    ladj = side.numpy(t.log_abs_det_jacobian(side.array(x), side.array(y)))
    np.testing.assert_allclose(ladj, [-17 * math.log(17)], rtol=1e-12)
    noisy = side.numpy(t.add_noise(*key, np.arange(17.0)[None]))
    assert np.all((noisy >= np.arange(17)) & (noisy < np.arange(17) + 1))
    with pytest.raises(DataError, match=r"pixel values of 17 levels \(integers 0..16\)"):
        t.add_noise(*key, np.asarray([[3.0, 17.0]]))
    with pytest.raises(ConfigError, match="levels must be an integer >= 2"):
        side.flows.Dequantize(levels=1)


def test_realnvp_plan_is_the_papers(float64):
    """MNIST: 3 checkerboard, squeeze, 3 channel, factor out 2 of 4 channels; again at 14x14;
    then 4 checkerboard couplings on (4, 7, 7)."""
    plan = plans.realnvp_plan((1, 28, 28))
    kinds = [layer.kind for layer in reversed(plan)]  # data to noise
    assert kinds == ["coupling"] * 3 + ["squeezed"]
    inner = list(reversed(plan[0].parts))
    assert [layer.kind for layer in inner] == ["coupling"] * 3 + ["factor_out"]
    assert [layer.shape for layer in inner] == [(4, 14, 14)] * 4 and inner[-1].keep == 2
    level2 = list(reversed(inner[-1].parts))
    last = list(reversed(list(reversed(level2[-1].parts))[-1].parts))
    assert [layer.shape for layer in last] == [(4, 7, 7)] * 4
    masks = [layer.mask for layer in reversed(plan) if layer.kind == "coupling"]
    assert masks[0][0, 0, 0] and not masks[1][0, 0, 0]  # alternating checkerboards


def test_pyro_flows_deep_copy_after_a_call(float64):
    """Nothing holding an autograd graph stays on the modules after ``log_prob`` (deepcopy,
    as checkpointing and ``copy.deepcopy(model)`` do, refuses such tensors)."""
    import copy

    transforms = pflows.glow((1, 4, 4), scales=2, steps=1, hidden=2)
    flow = pdist.TransformedDistribution(SIDES["pyro"].normal((1, 4, 4)), transforms)
    flow.log_prob(torch.randn(2, 1, 4, 4)).sum().backward()
    copies = copy.deepcopy(torch.nn.ModuleList(transforms))
    assert len(list(copies.parameters())) == len(list(torch.nn.ModuleList(transforms).parameters()))


def test_conv_weights_per_layer_kernels():
    """One kernel size per convolution: torch's layout ``(out, in, k, k)``, torch's default
    range ``1/sqrt(in k^2)`` for each layer but the last, which is zero."""
    pairs = plans.conv_weights((2, 16, 16, 4), seed=0, kernel_size=(3, 1, 3))
    assert [w.shape for w, _ in pairs] == [(16, 2, 3, 3), (16, 16, 1, 1), (4, 16, 3, 3)]
    for (w, b), fan_in in zip(pairs[:2], (2 * 9, 16), strict=True):
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
        assert np.abs(b).max() <= bound
    assert not pairs[2][0].any() and not pairs[2][1].any()
    same = plans.conv_weights((2, 16, 4), seed=0, kernel_size=np.int64(3))
    assert [w.shape for w, _ in same] == [(16, 2, 3, 3), (4, 16, 3, 3)]


def test_glownet_is_glows_three_convolutions(float64):
    """Pyro's GlowNet against torch's own ``conv2d``: 3x3 -> relu -> 1x1 -> relu -> 3x3,
    same padding (NumPyro's is held to Pyro's by the parity tests)."""
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    net = pflows.GlowNet(2, 4, 8, seed=1)
    weights = random_weights(net, rng, 1.0)
    net.set_weights(weights)
    x = torch.as_tensor(rng.standard_normal((3, 5, 2, 6, 6)))  # two batch axes

    def conv(h, i, padding):
        return F.conv2d(h, torch.as_tensor(weights[f"convs.{i}.weight"]),
                        torch.as_tensor(weights[f"convs.{i}.bias"]), padding=padding)  # fmt: skip

    flat = x.reshape(15, 2, 6, 6)
    want = conv(F.relu(conv(F.relu(conv(flat, 0, 1)), 1, 0)), 2, 1).reshape(3, 5, 4, 6, 6)
    torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)
    assert [c.weight.shape[-1] for c in net.convs] == [3, 1, 3]


def test_each_builder_has_its_own_conditioner(float64, side):
    """``glow`` builds GlowNets (3 convolutions), ``multiscale_realnvp`` residual nets with 2
    blocks (6 convolutions), unless ``conditioner`` says otherwise."""

    def nets(transforms):
        found = []

        def walk(t):
            if hasattr(t, "conditioner"):
                found.append(t.conditioner)
            for part in getattr(t, "parts", []):
                walk(part)

        for t in transforms:
            walk(t)
        return found

    f = side.flows
    glow = nets(f.glow((1, 4, 4), scales=2, steps=1, hidden=2))
    assert glow and all(type(n) is f.GlowNet and len(n.weights if side.name == "numpyro"
                        else n.convs) == 3 for n in glow)  # fmt: skip
    realnvp = nets(f.multiscale_realnvp((1, 4, 4), scales=1, steps=1, hidden=2))
    size = (lambda n: len(n.weights)) if side.name == "numpyro" else (lambda n: len(n.convs))
    assert realnvp and all(type(n) is f.ConvNet and size(n) == 6 for n in realnvp)
    swapped = nets(f.glow((1, 4, 4), scales=2, steps=1, hidden=2, conditioner="resnet"))
    assert all(type(n) is f.ConvNet and size(n) == 4 for n in swapped)  # 1 block
    assert all(
        type(n) is f.GlowNet
        for n in nets(
            f.multiscale_realnvp((1, 4, 4), scales=1, steps=1, hidden=2, conditioner="glow")
        )
    )
