"""Simple flow transforms (planar, radial and their conditional forms, permutations, LU-linear,
diagonal scaling) on both backends: round trip, log-det against the autodiff Jacobian, the
change-of-variables log-density, parity, fuzzing with extreme inputs and parameters, gradients
(Pyro through ``rsample``; NumPyro through ``eqx_module`` and ``jit``), initialisation and
bad input.

The check helpers are written here (a few lines each); issue 12's shared ones live in
``tests/flow_checks.py``.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro.distributions as pdist
import pytest
import torch
from numpyro import handlers as nh
from numpyro.contrib.module import eqx_module
from numpyro.infer.util import log_density

import ppgen.models.numpyro as nmodels
import ppgen.models.pyro as pmodels
from ppgen.errors import CheckpointError, ConfigError

D, C = 3, 2  # event and context sizes
BATCHES = [(), (3,), (2, 3)]
CASES = {
    "planar": lambda m: m.Planar(D, seed=1),
    "radial": lambda m: m.Radial(D, seed=2),
    "conditional_planar": lambda m: m.ConditionalPlanar(D, C, [8], seed=3),
    "conditional_radial": lambda m: m.ConditionalRadial(D, C, 8, seed=4),
    "reverse_permutation": lambda m: m.Permutation(m.reverse_permutation(D)),
    "random_permutation": lambda m: m.Permutation(m.random_permutation(D, seed=1)),
    "lu_linear": lambda m: m.LULinear(D, seed=5),
    "diagonal_scaling": lambda m: m.DiagonalScaling(D),
}
WITH_PARAMS = [c for c in CASES if "permutation" not in c]
CONDITIONAL = ("conditional_planar", "conditional_radial")


class Pyro:
    models = pmodels

    @staticmethod
    def array(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.get_default_dtype())

    @staticmethod
    def numpy(a):
        return a.detach().numpy()

    @staticmethod
    def forward(t, x):
        return t(x)

    @staticmethod
    def inverse(t, y):
        return t.inv(y.clone())  # a fresh tensor: Pyro would return its cached x for y itself

    @staticmethod
    def ladj(t, x, y):
        return t.log_abs_det_jacobian(x, y)

    @staticmethod
    def base():
        return pdist.Normal(torch.zeros(D), torch.ones(D)).to_event(1)

    @staticmethod
    def flat_jacobian(t, x):
        """d vec(t(x)) / d vec(x), ``(n D, n D)``."""
        return torch.autograd.functional.jacobian(
            lambda v: t(v.reshape(x.shape)).reshape(-1), x.reshape(-1)
        )

    @classmethod
    def log_prob(cls, t, y):
        return pdist.TransformedDistribution(cls.base(), [t]).log_prob(y.clone())


class NumPyro:
    models = nmodels

    @staticmethod
    def array(a):
        return jnp.asarray(np.asarray(a), dtype=jnp.zeros(()).dtype)

    @staticmethod
    def numpy(a):
        return np.asarray(a)

    # Jitted, so each test compiles a few functions rather than every primitive eagerly.
    forward = staticmethod(jax.jit(lambda t, x: t(x)))
    inverse = staticmethod(jax.jit(lambda t, y: t.inv(y)))
    ladj = staticmethod(jax.jit(lambda t, x, y: t.log_abs_det_jacobian(x, y)))

    @staticmethod
    def base():
        return ndist.Normal(jnp.zeros(D), jnp.ones(D)).to_event(1)

    @staticmethod
    @jax.jit
    def flat_jacobian(t, x):
        """d vec(t(x)) / d vec(x), ``(n D, n D)``."""
        return jax.jacfwd(lambda v: t(v.reshape(x.shape)).reshape(-1))(x.reshape(-1))

    @staticmethod
    @jax.jit
    def log_prob(t, y):
        return ndist.TransformedDistribution(NumPyro.base(), [t]).log_prob(y)


SIDES = {"pyro": Pyro, "numpyro": NumPyro}


def random_weights(case, seed=0, scale=1.0):
    """The fresh weights of ``case`` moved by standard normal noise, then scaled (the last
    layers start at zero, so a fresh conditional flow would ignore its context)."""
    weights = CASES[case](pmodels).get_weights()
    rng = np.random.default_rng(seed)
    return {k: scale * (v + rng.normal(size=v.shape)) for k, v in weights.items()}


def build(side, case, weights=None, batch=(), seed=0):
    """``case`` on ``side`` holding ``weights``; conditional ones conditioned on a context
    of shape ``(*batch, C)`` drawn from ``seed``."""
    t = CASES[case](side.models)
    if weights:
        t = t.set_weights(weights)  # Pyro: in place, returns self; NumPyro: a new transform
    if case in CONDITIONAL:
        context = np.random.default_rng(seed + 100).normal(size=(*batch, C))
        t = t.condition(side.array(context))
    return t


def autodiff_log_det(side, t, x):
    """log|det dy/dx| per batch element from the full Jacobian of the flattened batch; also
    checks that no element's output depends on another element's input."""
    n = int(np.prod(x.shape[:-1], dtype=int))
    jac = side.numpy(side.flat_jacobian(t, x))
    blocks = jac.reshape(n, D, n, D)
    idx = np.arange(n)
    diagonal = blocks[idx, :, idx, :]  # (n, D, D)
    off = blocks.copy()
    off[idx, :, idx, :] = 0
    np.testing.assert_array_equal(off, 0)
    return np.linalg.slogdet(diagonal)[1].reshape(x.shape[:-1])


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(SIDES))
def test_round_trip_log_det_and_change_of_variables(float64, name, case, batch):
    side = SIDES[name]
    t = build(side, case, random_weights(case), batch)
    x_np = 2.0 * np.random.default_rng(1).normal(size=(*batch, D))
    x = side.array(x_np)
    y = side.forward(t, x)
    assert y.shape == x.shape
    np.testing.assert_allclose(side.numpy(side.inverse(t, y)), x_np, atol=1e-5)  # the bar
    ladj = side.numpy(side.ladj(t, x, y))
    assert ladj.shape == batch
    exact = autodiff_log_det(side, t, x)
    np.testing.assert_allclose(ladj, exact, atol=1e-4)  # the bar
    # The density of y is the base density of x = f^{-1}(y) times |det df^{-1}/dy|.
    expected = side.numpy(side.base().log_prob(x)) - exact
    np.testing.assert_allclose(side.numpy(side.log_prob(t, y)), expected, atol=1e-4)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_weights_same_numbers_on_both_backends(float64, case, batch):
    weights = random_weights(case, seed=2)
    x = np.random.default_rng(3).normal(size=(*batch, D))
    out = {}
    for name, side in SIDES.items():
        t = build(side, case, weights, batch)
        y = side.forward(t, side.array(x))
        out[name] = [
            side.numpy(y),
            side.numpy(side.inverse(t, side.array(x))),
            side.numpy(side.ladj(t, side.array(x), y)),
            side.numpy(side.log_prob(t, side.array(x))),
        ]
    for p, n in zip(out["pyro"], out["numpyro"], strict=True):
        np.testing.assert_allclose(p, n, atol=1e-5, rtol=0)  # the parity bar


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_same_seed_gives_the_same_initial_weights_on_both_backends(case):
    pyro_weights = CASES[case](pmodels).get_weights()
    numpyro_weights = CASES[case](nmodels).get_weights()
    assert pyro_weights.keys() == numpyro_weights.keys()
    for key, value in pyro_weights.items():
        # float32 on both sides, from the same float64 numpy draws.
        np.testing.assert_allclose(numpyro_weights[key], value, rtol=1e-6, err_msg=key)


@pytest.mark.parametrize("name", sorted(SIDES))
def test_seeds_change_the_initial_weights(name):
    m = SIDES[name].models
    for make in (m.Planar, m.Radial, m.LULinear):
        a, b = make(D, seed=0).get_weights(), make(D, seed=1).get_weights()
        assert any(not np.array_equal(a[k], b[k]) for k in a)
    a = m.ConditionalPlanar(D, C, 4, seed=0).get_weights()
    b = m.ConditionalPlanar(D, C, 4, seed=1).get_weights()
    assert not np.array_equal(a["nn.layers.0.weight"], b["nn.layers.0.weight"])


@pytest.mark.parametrize("case", ["planar", "radial", *CONDITIONAL, "diagonal_scaling"])
@pytest.mark.parametrize("name", sorted(SIDES))
def test_fresh_planar_radial_and_scaling_are_the_identity(float64, name, case):
    side = SIDES[name]
    t = build(side, case, batch=(4,))
    x_np = np.random.default_rng(0).normal(size=(4, D))
    x = side.array(x_np)
    y = side.forward(t, x)
    np.testing.assert_allclose(side.numpy(y), x_np, atol=1e-12)
    np.testing.assert_allclose(side.numpy(side.ladj(t, x, y)), 0.0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SIDES))
def test_lu_linear_starts_orthogonal_and_its_log_det_is_the_matrix_log_det(float64, name):
    side = SIDES[name]
    t = side.models.LULinear(4, seed=2)
    w = side.numpy(t.weight())
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)  # Glow: a random rotation
    weights = {
        k: v + np.random.default_rng(0).normal(size=v.shape) for k, v in t.get_weights().items()
    }
    t = t.set_weights(weights)
    x = side.array(np.zeros((2, 4)))
    ladj = side.numpy(side.ladj(t, x, side.forward(t, x)))
    np.testing.assert_allclose(ladj, np.linalg.slogdet(side.numpy(t.weight()))[1], atol=1e-10)


def fuzz_inputs(n=10_000, seed=0):
    """``n`` inputs with magnitudes from 1e-2 to 1e4 (a random direction times a log-uniform
    radius), so the batch covers saturated tanh, far tails and points near the centres."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, D)) * 10.0 ** rng.uniform(-2, 4, size=(n, 1))


# Extreme but valid parameters: the randomised weights scaled by 10 (planar: |w|, |u| ~ 10,
# so w.x reaches 1e5 and tanh saturates; radial: alpha, alpha + beta down to ~ 1e-6; the
# hypernetworks' outputs ~ 1e2; the scaling's exp(log_scale) up to e^{+-20}). LU by 3 only:
# its diagonals are then e^{+-6} and W's condition number ~ 1e9 (scaled by 10 it is ~ 1e26,
# where no float64 solve can round-trip).
FUZZ_SCALE = {"lu_linear": 3.0}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", sorted(SIDES))
def test_fuzz_no_nan_and_round_trip(float64, name, case):
    side = SIDES[name]
    x_np = fuzz_inputs()
    t = build(
        side,
        case,
        random_weights(case, seed=7, scale=FUZZ_SCALE.get(case, 10.0)),
        batch=(len(x_np),),
    )
    x = side.array(x_np)
    y = side.forward(t, x)
    x_back, ladj = side.numpy(side.inverse(t, y)), side.numpy(side.ladj(t, x, y))
    assert np.isfinite(side.numpy(y)).all() and np.isfinite(x_back).all()
    assert np.isfinite(ladj).all()
    error = np.abs(x_back - x_np).max(-1) / (1.0 + np.abs(x_np).max(-1))
    assert error.max() <= 1e-4, f"worst relative round-trip error {error.max():.3g}"


# Fixed examples from the fuzz test (weights random_weights(case, seed=7, scale=10)):
# planar's first row sent an unguarded Newton iteration into a 2-cycle inside its bracket
# (round-trip error 19.5 before the rtsafe step-halving rule); the other rows are the worst
# round trips the fuzz then met. Radial's last rows sit at and next to x0, where the flow
# contracts hardest (alpha ~ 1e-6, alpha + beta ~ 1e-4).
WORST_PLANAR = {
    "bias": np.array([0.012301533574825742]),
    "u": np.array([3.1555576518882593, 3.6641684747903405, -13.965931778049544]),
    "w": np.array([-4.410203487658187, -4.714958823285972, -3.5074548417228186]),
    "x": np.array(
        [
            [-0.21559885708490661, 0.08620017015964541, -0.1951779130027908],
            [-0.07025949433471285, -0.08147827537945478, -0.06640899609826718],
            [-0.0658266376316059, -0.24079891531302425, 0.04096346969408354],
        ]
    ),
}
WORST_RADIAL = {
    "x0": np.array([-2.7403644356791257, 0.6606315232057064, 0.8869877647461699]),
    "alpha_prime": np.array([-13.618067200778675]),
    "beta_prime": np.array([-9.258856664923158]),
    "x": np.array(
        [
            [0.053432260842376025, -0.057298622865453265, -0.06814370043619625],
            [1.6427416127534542, -0.028538302787401125, -0.19964979266252325],
            [-2.7403644356791257, 0.6606315232057064, 0.8869877647461699],
            [-2.7403644356791257 + 1e-9, 0.6606315232057064, 0.8869877647461699],
        ]
    ),
}


@pytest.mark.parametrize("case", ["planar", "radial"])
@pytest.mark.parametrize("name", sorted(SIDES))
def test_worst_fuzz_cases_as_fixed_examples(float64, name, case):
    side = SIDES[name]
    example = WORST_PLANAR if case == "planar" else WORST_RADIAL
    t = build(side, case, {k: v for k, v in example.items() if k != "x"})
    x = side.array(example["x"])
    y = side.forward(t, x)
    x_back = side.numpy(side.inverse(t, y))
    assert np.isfinite(x_back).all()
    scale = 1.0 + np.abs(example["x"]).max(-1, keepdims=True)
    np.testing.assert_allclose(x_back / scale, example["x"] / scale, atol=1e-4)
    assert np.isfinite(side.numpy(side.ladj(t, x, y))).all()


def test_planar_inverse_has_the_implicit_function_gradient(float64):
    """d/dtheta f^{-1}(f(x; theta); theta) = 0: the inverse's gradient is right only if the
    root find's is the implicit-function one (Pyro and NumPyro)."""
    weights = random_weights("planar", seed=4)
    x_np = np.random.default_rng(5).normal(size=(5, D))
    # Pyro
    t = build(Pyro, "planar", weights)
    t.inv(t(Pyro.array(x_np)).clone()).sum().backward()
    for key, param in t.named_parameters():
        np.testing.assert_allclose(param.grad.numpy(), 0.0, atol=1e-10, err_msg=key)
    # NumPyro
    t = build(NumPyro, "planar", weights)

    def round_trip(t):
        return jnp.sum(t.inv(t(NumPyro.array(x_np))))

    grads = jax.jit(jax.grad(round_trip))(t)
    for leaf in jax.tree_util.tree_leaves(grads):
        np.testing.assert_allclose(np.asarray(leaf), 0.0, atol=1e-10)
    # ... and the gradient of the inverse itself is not zero (the test can fail).
    g = jax.jit(jax.grad(lambda t: jnp.sum(t.inv(NumPyro.array(x_np)))))(t)
    assert max(np.abs(np.asarray(leaf)).max() for leaf in jax.tree_util.tree_leaves(g)) > 1e-3


@pytest.mark.parametrize("case", WITH_PARAMS)
def test_pyro_gradients_reach_every_parameter_through_rsample(float64, case):
    t = CASES[case](pmodels).set_weights(random_weights(case, seed=8))
    base = Pyro.base()
    if case in CONDITIONAL:
        context = torch.randn(4, C)
        flow = pdist.ConditionalTransformedDistribution(base, [t]).condition(context)
    else:
        flow = pdist.TransformedDistribution(base, [t])
    y = flow.rsample((4,))
    (y.square().sum() + flow.log_prob(y).sum()).backward()
    for key, param in t.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, key


class Holder(eqx.Module):
    """A list of transforms inside an Equinox module, the way a flow model holds them."""

    transforms: list


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpyro_transforms_register_with_eqx_module_and_jit(float64, case):
    holder = Holder([CASES[case](nmodels).set_weights(random_weights(case, seed=9))])
    x = NumPyro.array(np.random.default_rng(0).normal(size=(5, D)))
    context = NumPyro.array(np.random.default_rng(1).normal(size=(5, C)))

    def model():
        transforms = eqx_module("flow", holder).transforms
        if case in CONDITIONAL:
            transforms = [t.condition(context) for t in transforms]
        with numpyro.plate("data", 5):
            numpyro.sample("x", ndist.TransformedDistribution(NumPyro.base(), transforms), obs=x)

    params = nh.trace(nh.seed(model, 0)).get_trace()["flow$params"]["value"]

    def loss(params):
        return -log_density(nh.substitute(model, {"flow$params": params}), (), {}, {})[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    t = holder.transforms[0]
    t = t.condition(context) if case in CONDITIONAL else t
    np.testing.assert_allclose(value, -jnp.sum(NumPyro.log_prob(t, x)), rtol=1e-12)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == len(holder.transforms[0].get_weights())  # each parameter is a param
    for leaf in leaves:
        assert np.isfinite(leaf).all() and np.abs(leaf).sum() > 0
    # A transform survives flatten/unflatten, jitted, with the same numbers as eagerly.
    np.testing.assert_allclose(jax.jit(lambda t, x: t(x))(t, x), t(x), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(SIDES))
def test_permutations(name):
    m = SIDES[name].models
    np.testing.assert_array_equal(m.reverse_permutation(4), [3, 2, 1, 0])
    perm = m.random_permutation(6, seed=3)
    np.testing.assert_array_equal(np.sort(perm), np.arange(6))
    np.testing.assert_array_equal(perm, nmodels.random_permutation(6, seed=3))
    assert not np.array_equal(perm, m.random_permutation(6, seed=4))
    x = np.arange(12.0).reshape(2, 6)
    t = m.Permutation(perm)
    np.testing.assert_array_equal(SIDES[name].numpy(t(SIDES[name].array(x))), x[:, perm])
    assert t.get_weights() == {}


def test_building_pyro_transforms_leaves_torch_global_random_state_alone():
    state = torch.random.get_rng_state()
    for make in CASES.values():
        make(pmodels)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize("name", sorted(SIDES))
def test_bad_input_is_a_one_line_error(name):
    m = SIDES[name].models
    bad = [
        (lambda: m.Planar(0), "input_dim must be a positive integer"),
        (lambda: m.Radial(2.5), "input_dim must be a positive integer"),
        (lambda: m.LULinear(-1), "dim must be a positive integer"),
        (lambda: m.DiagonalScaling(0), "dim must be a positive integer"),
        (lambda: m.ConditionalPlanar(3, 0, 8), "context_dim must be a positive integer"),
        (lambda: m.ConditionalRadial(3, 2, [8, 0]), "hidden width must be a positive integer"),
        (lambda: m.ConditionalPlanar(3, 2, 8, activation="relu6"), "unknown activation"),
        (lambda: m.Permutation([0, 0, 1]), "each of 0, ..., D-1 once"),
        (lambda: m.Permutation([[0, 1]]), "1-D integer array"),
        (lambda: m.Permutation([0.0, 1.0]), "1-D integer array"),
        (lambda: m.reverse_permutation(0), "dim must be a positive integer"),
    ]
    for make, message in bad:
        with pytest.raises(ConfigError, match=message) as info:
            make()
        assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="missing \\['w'\\]"):
        m.Planar(3).set_weights({"bias": np.zeros(1), "u": np.zeros(3)})
    with pytest.raises(CheckpointError, match="has shape"):
        m.DiagonalScaling(3).set_weights({"log_scale": np.zeros(4)})
