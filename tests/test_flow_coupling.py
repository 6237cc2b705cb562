"""Coupling and autoregressive flows (NICE, RealNVP, spline coupling, MAF, IAF, spline
autoregressive) and their pieces (masks, splines, MADE), on both backends.

Every transform, over batch shapes ``()``, ``(3,)``, ``(2, 3)``, in float64: round trip,
log-det against the autodiff Jacobian, change of variables through each backend's
``TransformedDistribution``, parity of the two backends on the same weights, and 10,000
fuzzed inputs with extreme weights. Weights are randomised first: the conditioners' last
layers start at zero, which makes every fresh flow the identity (tested separately).
"""

from __future__ import annotations

import equinox as eqx
import flow_checks as fc
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro.distributions as pdist
import pytest
import torch
from numpyro.contrib.module import eqx_module
from numpyro.infer.util import log_density

import ppgen.models.numpyro as N
import ppgen.models.pyro as P
from ppgen.errors import ConfigError, DataError
from ppgen.models import masks
from ppgen.models.numpyro import splines as nsplines
from ppgen.models.numpyro.coupling import zero_last_layer as n_zero_last_layer
from ppgen.models.pyro import splines as psplines
from ppgen.models.pyro.coupling import zero_last_layer as p_zero_last_layer

D = 5  # odd, so the two halves of a vector coupling differ in size
CONTEXT = 2
IMAGE = (2, 4, 4)
ORDER = (2, 0, 4, 1, 3)  # a non-trivial autoregressive order
BATCHES = [(), (3,), (2, 3)]


class PyroFlatConditioner(torch.nn.Module):
    """A test conditioner for image couplings: flatten, MLP, reshape to ``(C p, H, W)``."""

    def __init__(self, shape, num_params):
        super().__init__()
        self.shape, self.p = shape, num_params
        n = int(np.prod(shape))
        self.net = P.MLP([n, 16, n * num_params])

    def forward(self, x):
        c, h, w = self.shape
        out = self.net(x.reshape(*x.shape[:-3], c * h * w))
        return out.reshape(*x.shape[:-3], c * self.p, h, w)


class NumPyroFlatConditioner(eqx.Module):
    """The NumPyro twin of :class:`PyroFlatConditioner` (weights ``net.layers.0.weight``)."""

    net: N.MLP
    shape: tuple = eqx.field(static=True)
    p: int = eqx.field(static=True)

    def __init__(self, shape, num_params):
        n = int(np.prod(shape))
        self.net, self.shape, self.p = N.MLP([n, 16, n * num_params]), tuple(shape), num_params

    def __call__(self, x):
        c, h, w = self.shape
        out = self.net(x.reshape(*x.shape[:-3], c * h * w))
        return out.reshape(*x.shape[:-3], c * self.p, h, w)

    def state_dict(self):
        return {f"net.{k}": v for k, v in self.net.state_dict().items()}

    def load_state_dict(self, weights):
        net = self.net.load_state_dict({k.removeprefix("net."): v for k, v in weights.items()})
        return eqx.tree_at(lambda m: m.net, self, net)


def _elementwise(lib, name):
    return {
        "additive": lib.Additive(),
        "affine": lib.Affine(),
        "spline": lib.RationalQuadraticSpline(bins=4, bound=3.0),
    }[name]


# name -> (structure, mask or direction, element-wise map, conditional)
KINDS = {
    "nice": ("coupling", masks.half_mask(D), "additive", False),
    "realnvp": ("coupling", masks.alternating_mask(D, flip=True), "affine", False),
    "spline_coupling": ("coupling", masks.half_mask(D, flip=True), "spline", False),
    "conditional_nice": ("coupling", masks.alternating_mask(D), "additive", True),
    "image_checkerboard_affine": ("coupling", masks.checkerboard_mask(IMAGE), "affine", False),
    "image_channel_spline": ("coupling", masks.channel_mask(IMAGE, flip=True), "spline", False),
    "maf": ("autoregressive", "maf", "affine", False),
    "iaf": ("autoregressive", "iaf", "affine", False),
    "maf_spline": ("autoregressive", "maf", "spline", False),
    "iaf_spline": ("autoregressive", "iaf", "spline", False),
    "conditional_maf": ("autoregressive", "maf", "affine", True),
    "conditional_iaf_spline": ("autoregressive", "iaf", "spline", True),
}


def build(lib, kind):
    """A fresh transform of ``kind`` on the backend ``lib`` (``P`` or ``N``), unconditioned."""
    structure, spec, ew_name, conditional = KINDS[kind]
    ew = _elementwise(lib, ew_name)
    context_dim = CONTEXT if conditional else 0
    if structure == "autoregressive":
        made = lib.MADE(D, [16, 16], ew.num_params, context_dim=context_dim, order=ORDER, seed=3)
        return lib.MaskedAutoregressive(made, ew, direction=spec)
    if spec.ndim == 3:
        flat = PyroFlatConditioner if lib is P else NumPyroFlatConditioner
        return lib.Coupling(spec, flat(IMAGE, ew.num_params), ew)
    sizes = [int(spec.sum()) + context_dim, 16, int((~spec).sum()) * ew.num_params]
    return lib.Coupling(spec, lib.MLP(sizes, seed=1), ew)


def event_shape(kind):
    return IMAGE if KINDS[kind][1] is not None and np.ndim(KINDS[kind][1]) == 3 else (D,)


def pair(kind, scale=0.3, seed=0, context=None):
    """``(pyro, numpyro)`` transforms of ``kind`` with the same random weights, conditioned
    on ``context`` (numpy; a fixed ``(CONTEXT,)`` vector by default) when conditional."""
    p = build(P, kind)
    p = p.set_weights(fc.random_weights(p.get_weights(), seed, scale))
    n = fc.copy_weights(p, build(N, kind))
    if KINDS[kind][3]:
        if context is None:
            context = np.array([0.7, -1.3])
        p, n = p.condition(fc.as_backend(p, context)), n.condition(fc.as_backend(n, context))
    return p, n


def inputs(kind, batch, seed=1, scale=2.0):
    """Normal inputs of ``batch + event`` (scale 2: some fall outside the splines' bound)."""
    return scale * np.random.default_rng(seed).standard_normal((*batch, *event_shape(kind)))


# ---------------------------------------------------------------------------------------
# The bars, for every transform, both backends, every batch shape.


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_invariants_and_parity(float64, kind, batch):
    """On each backend: round trip (1e-5), ladj = autodiff log|det| (1e-4), change of
    variables through the ``TransformedDistribution`` (1e-4); across them, the same weights
    give the same forward, inverse and ladj (1e-5)."""
    x = inputs(kind, batch)
    p, n = pair(kind)
    vp, vn = fc.check_invariants(p, x), fc.check_invariants(n, x)
    for key in ("y", "ladj", "x_back", "log_prob"):
        np.testing.assert_allclose(vp[key], vn[key], atol=1e-5, rtol=0, err_msg=key)


@pytest.mark.parametrize(
    "kind", sorted(k for k in KINDS if KINDS[k][3] and len(event_shape(k)) == 1)
)
def test_per_example_context(float64, kind):
    """A context per example ``(3, C)`` broadcasts against inputs ``(2, 3, D)``: each
    example is transformed as with its own context alone, on both backends alike."""
    context = np.random.default_rng(5).standard_normal((3, CONTEXT))
    x = inputs(kind, (2, 3))
    p, n = pair(kind, context=context)
    fc.check_parity(p, n, x)
    fc.check_round_trip(p, x)
    y, ladj = fc.forward(n, x)
    for j in range(3):
        _, n_j = pair(kind, context=context[j])
        y_j, ladj_j = fc.forward(n_j, x[:, j])
        np.testing.assert_allclose(y[:, j], y_j, atol=1e-12)
        np.testing.assert_allclose(ladj[:, j], ladj_j, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fuzz(float64, kind):
    """10,000 inputs with |x| from 1e-3 to 1e4 through weights 3x larger than the
    invariant tests' (spline parameters in the thousands at |x| = 1e4, slopes at their
    floors): finite outputs and log-dets on both backends, backward error 1e-9, round trip
    within 1e-4 relative for 99% of the inputs (``fc.fuzz``). An IAF spline's inverse is
    D sequential solves, each feeding its rounding to the next coordinates' parameters;
    where slopes sit at the 1e-3 floor that is amplified, so 5% may miss 1e-4 there."""
    x = fc.fuzz_inputs(event_shape(kind), n=10_000)
    p, n = pair(kind, scale=1.0, seed=7)
    structure, direction, ew_name, _ = KINDS[kind]
    iterative_spline = structure == "autoregressive" and direction == "iaf" and ew_name == "spline"
    for t in (p, n):
        fc.fuzz(t, x, rtol=1e-4, ill_conditioned=0.05 if iterative_spline else 0.01)


# ---------------------------------------------------------------------------------------
# Backend integration: Pyro's TransformedDistribution, NumPyro's jit and eqx_module.


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_pyro_rsample_gradients_reach_every_parameter(float64, kind):
    """Inside ``pyro.distributions.TransformedDistribution``: ``rsample`` is differentiable
    and a loss on samples and on a data log-density reaches every parameter."""
    p = build(P, kind)
    p.set_weights(fc.random_weights(p.get_weights(), 0, 0.3))
    params = dict(p.named_parameters())
    t = p.condition(torch.tensor([0.7, -1.3])) if KINDS[kind][3] else p
    td = pdist.TransformedDistribution(fc.standard_normal(t, event_shape(kind)), [t])
    y = td.rsample((4,))
    assert y.shape == (4, *event_shape(kind)) and y.requires_grad
    data = torch.as_tensor(inputs(kind, (3,)))
    loss = (y**2).sum() - td.log_prob(data).sum()
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    for name, g in zip(params, grads, strict=True):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


class Holder(eqx.Module):
    """A list of transforms inside an Equinox module, as a flow model holds them."""

    transforms: list


# Both layer classes, every element-wise map, images and a context (the pytree code is one
# per class; compiling the gradient of every kind would only repeat it).
@pytest.mark.parametrize(
    "kind", ["nice", "spline_coupling", "image_checkerboard_affine", "conditional_maf", "iaf"]
)
def test_numpyro_eqx_module_and_jit(float64, kind):
    """A list of transforms in an ``eqx.Module`` registers with ``eqx_module``: the model's
    jitted log density is the ``TransformedDistribution``'s and its gradient reaches every
    parameter leaf."""
    n = build(N, kind)
    n = n.set_weights(fc.random_weights(n.get_weights(), 0, 0.3))
    conditional = KINDS[kind][3]
    context = jnp.array([0.7, -1.3])
    x = jnp.asarray(inputs(kind, (3,)))
    base = fc.standard_normal(n, event_shape(kind))

    def model(x):
        holder = eqx_module("flow", Holder([n]))
        ts = [t.condition(context) if conditional else t for t in holder.transforms]
        with numpyro.plate("data", len(x)):
            numpyro.sample("x", ndist.TransformedDistribution(base, ts), obs=x)

    params = {"flow$params": eqx.filter(Holder([n]), eqx.is_inexact_array)}
    value, grads = jax.jit(jax.value_and_grad(lambda p: log_density(model, (x,), {}, p)[0]))(params)
    t = n.condition(context) if conditional else n
    want = fc.transformed_log_prob(t, np.asarray(x)).sum()
    np.testing.assert_allclose(value, want, rtol=1e-10)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == len(n.get_weights())
    for leaf in leaves:
        assert jnp.isfinite(leaf).all() and jnp.abs(leaf).sum() > 0


# ---------------------------------------------------------------------------------------
# Initialisation and weights.


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fresh_flow_is_identity(float64, kind):
    """With the conditioner's last layer zero (MADE's is, ``zero_last_layer`` does it for
    couplings), every transform is the identity with log-det 0: additive and affine exactly,
    the spline to rounding (zero raw parameters: equal bins, every derivative 1)."""
    p, n = build(P, kind), build(N, kind)
    if KINDS[kind][0] == "coupling":
        p_zero_last_layer(p.conditioner)
        n = N.Coupling(n.mask, n_zero_last_layer(n.conditioner), n.elementwise)
    if KINDS[kind][3]:
        p, n = p.condition(torch.tensor([0.7, -1.3])), n.condition(jnp.array([0.7, -1.3]))
    x = inputs(kind, (3,))
    for t in (p, n):
        y, ladj = fc.forward(t, x)
        if KINDS[kind][2] == "spline":
            np.testing.assert_allclose(y, x, atol=1e-12)
            np.testing.assert_allclose(ladj, np.zeros(ladj.shape), atol=1e-12)
        else:
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(ladj, np.zeros(ladj.shape))


@pytest.mark.parametrize("context_dim", [0, 3])
def test_made_same_seed_same_weights_both_backends(float64, context_dim):
    """MADE draws its initial weights with numpy: one seed, identical weights on both
    backends (keys in torch layout), the output layer zero."""
    p = P.MADE(4, [8, 6], 3, context_dim=context_dim, seed=11)
    n = N.MADE(4, [8, 6], 3, context_dim=context_dim, seed=11)
    wp, wn = p.get_weights(), n.get_weights()
    assert list(wp) == list(wn)
    for k in wp:
        np.testing.assert_array_equal(wp[k], wn[k])
    assert not wp["layers.2.weight"].any() and not wp["layers.2.bias"].any()
    assert wp["layers.0.weight"].shape == (8, 4) and wp["layers.2.weight"].shape == (12, 6)
    other = N.MADE(4, [8, 6], 3, context_dim=context_dim, seed=12).get_weights()
    assert not np.array_equal(other["layers.0.weight"], wn["layers.0.weight"])


@pytest.mark.parametrize("kind", ["realnvp", "maf_spline", "image_channel_spline"])
def test_weights_round_trip(float64, kind):
    """``get_weights`` after ``set_weights`` gives the weights back, on both backends, with
    the same keys; a wrong key or shape is a one-line CheckpointError."""
    from ppgen.errors import CheckpointError

    p, n = build(P, kind), build(N, kind)
    w = fc.random_weights(p.get_weights(), 4)
    for t in (p, n):
        got = t.set_weights(w).get_weights()
        assert sorted(got) == sorted(w)
        for k in w:
            np.testing.assert_array_equal(got[k], w[k])
        key = sorted(w)[0]
        with pytest.raises(CheckpointError, match="shape"):
            t.set_weights({**w, key: np.zeros(3)})
        with pytest.raises(CheckpointError, match="missing"):
            t.set_weights({k: v for k, v in w.items() if k != key})


# ---------------------------------------------------------------------------------------
# MADE: the autoregressive property, by gradients (Germain et al. 2015).


def _jacobian_support(lib, made, x, context=None):
    """``|d out[i, j] / d x[k]|`` summed over the parameters j: ``(D, D)``."""
    if lib is P:
        xt = torch.as_tensor(x).requires_grad_(True)
        ctx = None if context is None else torch.as_tensor(context)
        jac = torch.autograd.functional.jacobian(lambda v: made(v, ctx), xt)  # (D, p, D)
        return jac.abs().sum(1).numpy()
    ctx = None if context is None else jnp.asarray(context)
    jac = jax.jacfwd(lambda v: made(v, ctx))(jnp.asarray(x))
    return np.asarray(jnp.abs(jac).sum(1))


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
@pytest.mark.parametrize(("order", "context_dim"), [(None, 0), (ORDER, 0), (ORDER, 2)])
def test_made_autoregressive_by_gradients(float64, lib, order, context_dim):
    """Output i moves with input k exactly when k comes before i in the order (every
    allowed connection is used: hidden layers at least D - 1 wide, tanh), whatever the
    context; the context reaches every output."""
    made = lib.MADE(D, [12, 12], 2, context_dim=context_dim, order=order, activation="tanh")
    made = made.set_weights(fc.random_weights(made.get_weights(), 2, 1.0))
    rng = np.random.default_rng(0)
    context = rng.standard_normal(context_dim) if context_dim else None
    support = _jacobian_support(lib, made, rng.standard_normal(D), context)
    rank = np.arange(D) if order is None else np.asarray(order)
    allowed = rank[None, :] < rank[:, None]  # (out i, in k)
    assert (support[~allowed] == 0).all()
    assert (support[allowed] > 1e-8).all()
    if context_dim:
        if lib is P:
            jac = torch.autograd.functional.jacobian(
                lambda c: made(torch.as_tensor(rng.standard_normal(D)), c),
                torch.as_tensor(context),
            )
        else:
            jac = jax.jacfwd(lambda c: made(jnp.asarray(rng.standard_normal(D)), c))(
                jnp.asarray(context)
            )
        assert (np.abs(fc.to_numpy(jac)).sum((1, 2)) > 0).all()


def test_made_masks_match_germain_degrees():
    """The numpy masks: hidden degrees ``arange(h) % (D - 1) + 1``, a hidden unit sees
    inputs of degree <= its own, output ``i * p + j`` sees hidden degrees < input i's."""
    ms = masks.made_masks(3, [4], num_params=2, order=[1, 2, 0])
    deg_in = np.array([2, 3, 1])
    deg_h = np.array([1, 2, 1, 2])
    np.testing.assert_array_equal(ms[0], deg_h[:, None] >= deg_in[None, :])
    np.testing.assert_array_equal(ms[1], np.repeat(deg_in, 2)[:, None] > deg_h[None, :])
    # The first input in the order (input 2) sees nothing; a one-input MADE is constant.
    assert not ms[1][4:].any()
    assert not masks.made_masks(1, [3])[1].any()


# ---------------------------------------------------------------------------------------
# Splines: closed-form properties (Durkan et al. 2019), stability, worst cases.

SPLINES = {"pyro": psplines, "numpyro": nsplines}


def _spline(backend, x, raw, bins, bound, inverse=False):
    mod = SPLINES[backend]
    if backend == "pyro":
        out, ladj = mod.rational_quadratic_spline(
            torch.as_tensor(x), torch.as_tensor(raw), bins, bound, inverse
        )
    else:
        out, ladj = _jax_spline(jnp.asarray(x), jnp.asarray(raw), bins, bound, inverse)
    return fc.to_numpy(out), fc.to_numpy(ladj)


# Compiled once per shape: eager JAX compiles every primitive for each new shape.
_jax_spline = jax.jit(nsplines.rational_quadratic_spline, static_argnums=(2, 3, 4))


def _knots(backend, raw, bins, bound):
    mod = SPLINES[backend]
    arr = torch.as_tensor(raw) if backend == "pyro" else jnp.asarray(raw)
    return [fc.to_numpy(a) for a in mod.spline_knots(arr, bins, bound)]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_spline_passes_through_its_knots_with_their_slopes(float64, backend):
    """g(x_k) = y_k, g'(x_k) = d_k at every knot, g(+-B) = +-B with slope 1, the identity
    outside [-B, B], strictly increasing; the inverse maps y_k back to x_k."""
    bins, bound = 6, 2.5
    raw = np.random.default_rng(0).standard_normal((1, 3 * bins - 1)) * 2
    xk, yk, dk = _knots(backend, raw, bins, bound)
    assert xk[0, 0] == -bound and xk[0, -1] == bound and yk[0, 0] == -bound
    raws = np.repeat(raw, bins + 1, axis=0)
    y, ladj = _spline(backend, xk[0], raws, bins, bound)
    np.testing.assert_allclose(y, yk[0], atol=1e-12)
    np.testing.assert_allclose(ladj, np.log(dk[0]), atol=1e-10)
    x_back, ladj_back = _spline(backend, yk[0], raws, bins, bound, inverse=True)
    np.testing.assert_allclose(x_back, xk[0], atol=1e-10)
    np.testing.assert_allclose(ladj_back, ladj, atol=1e-8)
    outside = np.array([-1e4, -bound - 1e-9, bound + 1e-9, 7.0])
    y_out, ladj_out = _spline(backend, outside, np.repeat(raw, 4, axis=0), bins, bound)
    np.testing.assert_array_equal(y_out, outside)
    np.testing.assert_array_equal(ladj_out, np.zeros(4))
    grid = np.linspace(-bound, bound, 2001)
    y_grid, _ = _spline(backend, grid, np.repeat(raw, len(grid), axis=0), bins, bound)
    assert (np.diff(y_grid) > 0).all()


def test_spline_one_bin_is_the_identity_bins_shape(float64):
    """With one bin and boundary slopes 1, the rational quadratic through (-B, -B), (B, B)
    is the identity: a closed form to anchor the formulas."""
    x = np.linspace(-3, 3, 13)
    raw = np.zeros((13, 2))
    for backend in SPLINES:
        y, ladj = _spline(backend, x, raw, 1, 3.0)
        np.testing.assert_allclose(y, x, atol=1e-14)
        np.testing.assert_allclose(ladj, 0, atol=1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_spline_fuzz_extreme_parameters(backend, dtype, float64):
    """10,000 draws of raw parameters up to |1e3| (bins down to the minimum width, slopes
    from 1e-3 to 1e3) and inputs up to |1e4|: no NaN/Inf in either direction; float64
    round trip within 1e-4 relative. In float32 a bin at the floors maps an interval of x
    into one rounding error of y, so there the inverse is checked by its backward error
    (``g(g^-1(y)) = y`` within 1e-3 relative: float32's 6e-8 times slopes up to 1e3 and
    more) and x only where the slope exceeds 1e-2."""
    rng = np.random.default_rng(3)
    n, bins, bound = 10_000, 8, 3.0
    raw = rng.standard_normal((n, 3 * bins - 1)) * 10.0 ** rng.uniform(-1, 3, (n, 1))
    x = fc.fuzz_inputs((), n=n, seed=4)
    x[3:5000] = rng.uniform(-bound, bound, 4997)  # most inside the bound, where it bends
    raw, x = raw.astype(dtype), x.astype(dtype)
    y, ladj = _spline(backend, x, raw, bins, bound)
    back, ladj_back = _spline(backend, y, raw, bins, bound, inverse=True)
    y_again, _ = _spline(backend, back, raw, bins, bound)
    for a in (y, ladj, back, ladj_back, y_again):
        assert np.isfinite(a).all()
    err = np.abs(back.astype(float) - x) / (1 + np.abs(x))
    if dtype == "float64":
        assert err.max() <= 1e-4, err.max()
    else:
        backward = np.abs(y_again.astype(float) - y) / (1 + np.abs(y))
        assert backward.max() <= 1e-3, backward.max()
        assert err[ladj > np.log(1e-2)].max() <= 1e-2


# Worst cases found by test_spline_fuzz_extreme_parameters and the transform fuzz, kept as
# fixed examples: the input right at a knot or at the bound, a bin at its minimum width
# next to a wide one, interior slopes at their floor and at 1e3.
WORST = [
    # (x, raw parameters of a 2-bin spline: widths 2 | heights 2 | interior slope 1)
    (3.0, [0.0, 0.0, 0.0, 0.0, 0.0]),
    (-3.0, [800.0, -800.0, -800.0, 800.0, 1000.0]),
    (2.9999999999, [800.0, -800.0, -800.0, 800.0, -1000.0]),
    (-2.994, [-800.0, 800.0, 800.0, -800.0, 1000.0]),
    (0.0, [-50.0, 50.0, 50.0, -50.0, -1000.0]),
]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("x", "raw"), WORST)
def test_spline_worst_cases(float64, backend, x, raw):
    """The fixed worst cases: finite, round trip within 1e-8, ladj by finite differences
    (the map's inverse's log-slope is minus the forward's)."""
    xs, raws = np.array([x]), np.array([raw])
    y, ladj = _spline(backend, xs, raws, 2, 3.0)
    back, ladj_back = _spline(backend, y, raws, 2, 3.0, inverse=True)
    assert np.isfinite(y).all() and np.isfinite(ladj).all()
    np.testing.assert_allclose(back, xs, atol=1e-8)
    np.testing.assert_allclose(ladj_back, ladj, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Bad input: one-line errors.


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_bad_configurations_are_one_line_config_errors(lib):
    cases = [
        (lambda: lib.RationalQuadraticSpline(bins=8, bound=0.0), "bound"),
        (lambda: lib.RationalQuadraticSpline(bins=8, bound=-1.0), "bound"),
        (lambda: lib.RationalQuadraticSpline(bins=0), "bins"),
        (lambda: lib.Affine(log_scale_bound=0), "log_scale_bound"),
        (lambda: lib.Coupling(np.ones(4, bool), lib.MLP([4, 2]), lib.Additive()), "both"),
        (lambda: lib.Coupling(np.ones((2, 2), bool), lib.MLP([4, 2]), lib.Additive()), "shape"),
        (lambda: lib.Coupling(np.arange(4), lib.MLP([2, 2]), lib.Additive()), "boolean"),
        (lambda: lib.MADE(3, [], 2), "hidden"),
        (lambda: lib.MADE(3, [4], 2, order=[0, 0, 1]), "permutation"),
        (lambda: lib.MaskedAutoregressive(lib.MADE(3, [4], 1), lib.Affine()), "num_params"),
        (lambda: lib.MaskedAutoregressive(lib.MADE(3, [4], 2), lib.Affine(), "up"), "direction"),
    ]
    for make, word in cases:
        with pytest.raises(ConfigError, match=word) as info:
            make()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_bad_inputs_are_one_line_errors(lib):
    """Data of the wrong dimensionality (DataError) and a conditioner that does not fit its
    mask and map (ConfigError), each in one line."""
    arr = torch.ones if lib is P else jnp.ones
    coupling = lib.Coupling(masks.half_mask(4), lib.MLP([2, 8, 4]), lib.Affine())
    made = lib.MaskedAutoregressive(lib.MADE(4, [8], 2), lib.Affine())
    image = lib.Coupling(masks.checkerboard_mask(IMAGE), lib.MLP([2, 2]), lib.Additive())
    cases = [
        (lambda: coupling(arr((3, 5))), DataError, r"\(4,\)"),
        (lambda: coupling.inv(arr((3, 5))), DataError, r"\(4,\)"),
        (lambda: made(arr((3, 2))), DataError, r"\(4,\)"),
        (
            lambda: made.inv(
                arr(
                    4,
                )[None, :, None]
            ),
            DataError,
            r"\(4,\)",
        ),
        (lambda: image(arr((3, 4, 4))), DataError, r"\(2, 4, 4\)"),
        (
            lambda: lib.Coupling(masks.half_mask(4), lib.MLP([2, 8, 3]), lib.Affine())(arr((3, 4))),
            ConfigError,
            "conditioner",
        ),
        (lambda: lib.MADE(4, [8], 2)(arr(4), arr(2)), ConfigError, "context"),
    ]
    for call, error, pattern in cases:
        with pytest.raises(error, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)


def test_pyro_layers_deepcopy_after_a_call(float64):
    """The log-det cached from the last call carries a graph; copying a used layer (a
    trainer's best-model snapshot) still works and gives the same map."""
    import copy

    for kind in ("realnvp", "maf"):
        p, _ = pair(kind)
        x = torch.as_tensor(inputs(kind, (3,)))
        y = p(x)
        twin = copy.deepcopy(p)
        torch.testing.assert_close(twin(x), y, rtol=0, atol=0)
