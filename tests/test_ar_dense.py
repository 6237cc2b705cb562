"""The dense autoregressive models, FVSBN, NADE and MADE (with its mask sets and ensemble),
on both backends: the autoregressive property by exact zero gradients, the exact
likelihood (all 2^D binary vectors sum to one; the plated-conditional form's
log-likelihood equals the efficient one), parity of the backends on the same weights, the
cached sampler equal to the naive one on the same noise, and one-line errors."""

import copy
import itertools
import json

import ar_checks
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro.infer.util import log_density
from pyro import poutine

import ppgen.models.numpyro as N
import ppgen.models.numpyro.ar as nar
import ppgen.models.pyro as P
import ppgen.models.pyro.ar as par
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.models import masks

LIBS = {"pyro": P, "numpyro": N}


def bernoulli(lib):
    return (par if lib is P else nar).Bernoulli()


def categorical(lib, k):
    return (par if lib is P else nar).Categorical(k)


# -- the models under test ----------------------------------------------------------------

D = 4
KINDS = ["fvsbn", "nade", "made", "made2_mask2", "made_direct", "made2_mask2_direct"]


def build(lib, kind, dim=D, seed=0):
    """A tiny model of ``kind`` with random (not initial) weights, the same on both sides."""
    net = {
        "fvsbn": lambda: lib.FVSBN(dim, seed=seed),
        "nade": lambda: lib.NADE(dim, 5, seed=seed),
        "made": lambda: lib.MADE(dim, [7], 1, activation="tanh", seed=seed),
        # Two hidden layers, the third of four mask sets (drawn order and degrees).
        "made2_mask2": lambda: lib.MADE(
            dim, [9, 9], 1, activation="tanh", seed=seed, num_masks=4, mask_index=2
        ),
        # With Germain et al.'s direct input-to-output connections.
        "made_direct": lambda: lib.MADE(dim, [7], 1, activation="tanh", seed=seed, direct=True),
        "made2_mask2_direct": lambda: lib.MADE(
            dim, [9, 9], 1, activation="tanh", seed=seed, num_masks=4, mask_index=2, direct=True
        ),
    }[kind]()
    return net.set_weights(random_weights(net.get_weights(), seed + 100))


def random_weights(weights, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {k: scale * rng.standard_normal(np.shape(v)) for k, v in weights.items()}


def arr(lib, a):
    a = np.array(a)  # a writable copy
    if lib is P:
        return torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else None)
    return jnp.asarray(a)


def num(a):
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


def log_prob(lib, net, head, x, context=None):
    """The efficient form: the base's AutoregressiveDistribution, one pass, ``(batch,)``."""
    return ar_checks.log_prob_of(net, head, np.asarray(x), context)


all_binary = ar_checks.all_binary


def positions_of(order):
    pos = np.empty(len(order), dtype=int)
    pos[list(order)] = np.arange(len(order))
    return pos


# -- the autoregressive property ----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_autoregressive_by_gradients(float64, lib, kind):
    """The gradient of the parameters of entry i with respect to every entry j at or after
    i in ``order`` is exactly zero; FVSBN and NADE use every allowed input."""
    net = build(lib, kind, dim=6)
    x = np.random.default_rng(0).uniform(size=6)  # any point: the zeros are structural
    dep = ar_checks.dependencies(net, x)  # (out i, in j), from the exact Jacobian
    ar_checks.assert_autoregressive(dep, net.order)
    if kind in ("fvsbn", "nade"):
        pos = positions_of(net.order)
        assert dep[pos[None, :] < pos[:, None]].all()
    assert net.event_shape == (6,) and net.num_params == 1


# -- exact likelihood -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_all_binary_vectors_sum_to_one(float64, lib, kind):
    """sum over the 2^D binary vectors of p(x) is 1 (a normalised density, whatever the
    weights)."""
    net = build(lib, kind)
    lp = log_prob(lib, net, bernoulli(lib), all_binary(D))
    assert abs(np.logaddexp.reduce(lp)) < 1e-10


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_categorical_head_sums_to_one(float64, lib):
    """MADE with a 3-way categorical head and a context: the 3^3 vectors' probabilities sum
    to one for each context (codes read as numbers)."""
    net = lib.MADE(3, [8], 3, context_dim=2, activation="tanh", seed=1)
    net = net.set_weights(random_weights(net.get_weights(), 7))
    x = np.array(list(itertools.product(range(3), repeat=3)))
    for c in np.random.default_rng(0).standard_normal((2, 2)):
        context = arr(lib, np.broadcast_to(c, (len(x), 2)))
        lp = log_prob(lib, net, categorical(lib, 3), x, context)
        assert abs(np.logaddexp.reduce(lp)) < 1e-10


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_plated_form_equals_efficient_form(float64, lib, kind):
    """The paper's chain of conditionals (one ``x_{i}`` site per entry) has the efficient
    one-pass log-likelihood (1e-5, float64), on random binary data."""
    net = build(lib, kind)
    x = np.random.default_rng(1).integers(0, 2, (7, D)).astype(float)
    lp = ar_checks.plated_log_prob(net, bernoulli(lib), x)
    sites = ar_checks.plated_sites(net, bernoulli(lib), x)
    assert sorted(sites) == sorted(f"x_{i}" for i in range(D))
    assert abs(lp - log_prob(lib, net, bernoulli(lib), x).sum()) < 1e-5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_plated_form_is_a_generative_program(float64, lib, kind):
    """Run with ``x=None`` the plated form draws every entry; the trace's log density is
    the efficient log-likelihood of the drawn x."""
    net, head = build(lib, kind), bernoulli(lib)
    if lib is P:

        def model():
            with pyro.plate("data", 5):
                return net.plated(None, head)

        pyro.set_rng_seed(0)
        tr = poutine.trace(model).get_trace()
        x, lp = num(tr.nodes["_RETURN"]["value"]), tr.log_prob_sum().item()
    else:

        def model():
            with numpyro.plate("data", 5):
                return net.plated(None, head)

        tr = numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()
        x = np.stack([np.asarray(tr[f"x_{i}"]["value"]) for i in range(D)], -1)
        lp = float(log_density(model, (), {}, {f"x_{i}": x[:, i] for i in range(D)})[0])
    assert x.shape == (5, D) and set(np.unique(x)) <= {0.0, 1.0}
    assert abs(lp - log_prob(lib, net, head, x).sum()) < 1e-5


@pytest.mark.parametrize("kind", ["fvsbn", "nade", "made"])  # one mask set: no draw per call
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_plated_form_honours_substituted_weights(float64, lib, kind):
    """Other weights substituted into the model's param sites (``poutine.substitute`` by
    short name on Pyro, NumPyro's ``substitute`` of ``net$params``) move the plated form's
    log-likelihood exactly as the efficient form's: both become the log-likelihood of a
    network holding those weights (1e-10)."""
    net, head = build(lib, kind), bernoulli(lib)
    other = copy.deepcopy(net).set_weights(random_weights(net.get_weights(), 5))
    density = lib.AutoregressiveDensity(net, head)
    x = np.random.default_rng(2).integers(0, 2, (6, D)).astype(float)
    want = log_prob(lib, other, head, x).sum()
    assert abs(want - log_prob(lib, net, head, x).sum()) > 0.1  # the weights matter
    got = []
    for fn in (density.model, density.plated_model):
        if lib is P:
            data = {k: v.detach() for k, v in other.named_parameters()}
            tr = poutine.trace(poutine.substitute(fn, data=data)).get_trace(torch.as_tensor(x))
            got.append(tr.log_prob_sum().item())
        else:
            params = {"net$params": eqx.partition(other, eqx.is_inexact_array)[0]}
            got.append(float(log_density(fn, (jnp.asarray(x),), {}, params)[0]))
    np.testing.assert_allclose(got, [want, want], rtol=1e-10)


# -- parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_parity_same_weights_same_outputs(float64, kind):
    """The same weights give the same parameters and log-likelihood on both backends (1e-5,
    float64), the same order and the same weight keys and shapes; the same seed gives the
    same initial weights."""
    p, n = build(P, kind), build(N, kind)
    assert p.order == n.order
    wp, wn = p.get_weights(), n.get_weights()
    assert sorted(wp) == sorted(wn) and all(wp[k].shape == wn[k].shape for k in wp)
    x = all_binary(D)
    np.testing.assert_allclose(num(p(arr(P, x))), num(n(arr(N, x))), atol=1e-5)
    np.testing.assert_allclose(
        log_prob(P, p, par.Bernoulli(), x), log_prob(N, n, nar.Bernoulli(), x), atol=1e-5
    )
    if kind in ("fvsbn", "nade"):  # fresh models: numpy draws their initial weights
        args = (D,) if kind == "fvsbn" else (D, 3)
        fresh_p = getattr(P, kind.upper())(*args, seed=4).get_weights()
        fresh_n = getattr(N, kind.upper())(*args, seed=4).get_weights()
        for k, v in fresh_p.items():
            np.testing.assert_array_equal(v, fresh_n[k])


@pytest.mark.parametrize("kind", ["fvsbn", "nade"])
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_weights_round_trip_and_checked(float64, lib, kind):
    """``set_weights(get_weights())`` round-trips; a missing key or a wrong shape is a
    one-line CheckpointError."""
    net = build(lib, kind)
    w = random_weights(net.get_weights(), 3)
    got = net.set_weights(w).get_weights()
    assert all(np.array_equal(got[k], w[k]) for k in w)
    key = sorted(w)[0]
    with pytest.raises(CheckpointError, match="shape"):
        net.set_weights({**w, key: np.zeros(3)})
    with pytest.raises(CheckpointError, match="missing"):
        net.set_weights({k: v for k, v in w.items() if k != key})


# -- sampling -----------------------------------------------------------------------------


def draw(lib, net, head, noise, cached, context=None, prefix=None):
    noise = arr(lib, noise)
    if lib is N:
        if prefix is not None:
            prefix = (jnp.asarray(prefix[0]), prefix[1])
        fn = jax.jit(lambda e: net.sample(e, head, context, cached=cached, prefix=prefix))
        return num(fn(noise))
    if prefix is not None:
        prefix = (torch.as_tensor(prefix[0]), prefix[1])
    return num(net.sample(noise, head, context, cached=cached, prefix=prefix))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_cached_sampling_equals_naive(float64, lib, kind):
    """The cached sampler (NADE: the running pre-activation; FVSBN: one row; MADE: the first
    layer's) draws exactly the naive sampler's x for the same noise, with and without a
    completion prefix (which keeps the first entries in order)."""
    net, head = build(lib, kind, dim=7), bernoulli(lib)
    noise = np.random.default_rng(2).uniform(size=(64, 7))
    fast, slow = draw(lib, net, head, noise, True), draw(lib, net, head, noise, False)
    np.testing.assert_array_equal(fast, slow)
    assert fast.shape == (64, 7) and set(np.unique(fast)) == {0.0, 1.0}
    given = np.random.default_rng(3).integers(0, 2, (64, 7)).astype(float)
    done = draw(lib, net, head, noise, True, prefix=(given, 3))
    np.testing.assert_array_equal(done, draw(lib, net, head, noise, False, prefix=(given, 3)))
    kept = list(net.order[:3])
    np.testing.assert_array_equal(done[:, kept], given[:, kept])


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_cached_sampling_categorical_with_context(float64, lib):
    """MADE with two hidden layers, a context and a 3-way categorical head (Gumbel noise):
    cached and naive samplers agree on the same uniform noise and return integer codes."""
    net = lib.MADE(5, [8, 8], 3, context_dim=2, seed=2, num_masks=3, mask_index=1)
    net = net.set_weights(random_weights(net.get_weights(), 9))
    rng = np.random.default_rng(4)
    noise = rng.uniform(size=(10, 5, 3))
    context = arr(lib, rng.standard_normal((10, 2)))
    head = categorical(lib, 3)
    fast = draw(lib, net, head, noise, True, context)
    np.testing.assert_array_equal(fast, draw(lib, net, head, noise, False, context))
    assert fast.dtype.kind == "i" and set(np.unique(fast)) <= {0, 1, 2}


@pytest.mark.parametrize("kind", ["nade", "made2_mask2"])
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_samples_follow_the_exact_probabilities(float64, lib, kind):
    """The frequencies of 20000 draws of a D = 3 model match its exact p(x) (8 cells; the
    largest deviation is below 4 standard errors)."""
    net, head = build(lib, kind, dim=3), bernoulli(lib)
    noise = np.random.default_rng(5).uniform(size=(20000, 3))
    x = draw(lib, net, head, noise, True)
    codes = x @ np.array([4, 2, 1])
    freq = np.bincount(codes.astype(int), minlength=8) / len(x)
    prob = np.exp(log_prob(lib, net, head, all_binary(3)))
    assert (np.abs(freq - prob) < 4 * np.sqrt(prob * (1 - prob) / len(x)) + 1e-3).all()


# -- MADE's mask sets and ensemble ------------------------------------------------------


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_mask_sets_change_the_order_and_stay_autoregressive(float64, lib):
    """Two mask sets give different orders, and each is autoregressive in its own order;
    set 0 is the single-mask MADE (the given order, deterministic degrees)."""
    net = build(lib, "made2_mask2", dim=6)
    nets = [net.with_mask(k) for k in range(4)]
    assert len({m.order for m in nets}) > 1 and nets[1].order != nets[3].order
    x = np.random.default_rng(0).uniform(size=6)
    for m in nets:
        pos = positions_of(m.order)
        assert tuple(pos) == m.positions
        dep = ar_checks.dependencies(m, x)
        ar_checks.assert_autoregressive(dep, m.order)
        assert dep.any()
    single = lib.MADE(6, [9, 9], 1, activation="tanh", seed=0).set_weights(net.get_weights())
    assert nets[0].order == tuple(range(6))
    np.testing.assert_array_equal(num(nets[0](arr(lib, x))), num(single(arr(lib, x))))
    # with_mask shares the weights; the net it came from keeps its own set.
    assert net.mask_index == 2 and nets[1].mask_index == 1
    np.testing.assert_array_equal(num(nets[1](arr(lib, x))), num(net(arr(lib, x), mask_index=1)))


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_connectivity_agnostic_sets_keep_the_order(float64, lib):
    """``agnostic="connectivity"``: every mask set keeps the given order (so each is
    autoregressive in it) but draws its own hidden connectivity (the sets are different
    models), and the ensemble still sums to one over the 2^D vectors."""
    order = [2, 0, 3, 1]
    net = lib.MADE(D, [9, 9], 1, order=order, activation="tanh", seed=0, num_masks=4,
                   agnostic="connectivity")  # fmt: skip
    net = net.set_weights(random_weights(net.get_weights(), 5))
    nets = [net.with_mask(k) for k in range(4)]
    x = np.random.default_rng(0).uniform(size=D)
    for m in nets:
        assert m.positions == tuple(order)
        ar_checks.assert_autoregressive(ar_checks.dependencies(m, x), m.order)
    assert any(
        not np.array_equal(a, b) for a, b in zip(nets[1].masks(), nets[2].masks(), strict=True)
    )
    head, xs = bernoulli(lib), all_binary(D)
    singles = np.stack([log_prob(lib, m, head, xs) for m in nets])
    assert np.ptp(singles, 0).max() > 1e-3
    assert abs(np.logaddexp.reduce(num(net.log_prob_ensemble(arr(lib, xs), head)))) < 1e-10


def test_made_connectivity_agnostic_parity(float64):
    """Both backends draw the same connectivity-agnostic sets: the same ensemble."""
    p, n = (lib.MADE(D, [9, 9], 1, seed=3, num_masks=3, agnostic="connectivity") for lib in (P, N))
    w = random_weights(p.get_weights(), 1)
    x = all_binary(D)
    np.testing.assert_allclose(
        num(p.set_weights(w).log_prob_ensemble(arr(P, x), par.Bernoulli())),
        num(n.set_weights(w).log_prob_ensemble(arr(N, x), nar.Bernoulli())),
        atol=1e-5,
    )


@pytest.mark.parametrize("kind", ["made2_mask2", "made2_mask2_direct"])
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_ensemble_is_log_mean_exp_and_normalised(float64, lib, kind):
    """``log_prob_ensemble`` is ``log mean_k p_k(x)`` over the mask sets' exact
    likelihoods, and sums to one over the 2^D vectors (a mixture of densities)."""
    net, head = build(lib, kind), bernoulli(lib)
    x = all_binary(D)
    ens = num(net.log_prob_ensemble(arr(lib, x), head))
    singles = np.stack([log_prob(lib, net.with_mask(k), head, x) for k in range(4)])
    np.testing.assert_allclose(ens, np.logaddexp.reduce(singles, 0) - np.log(4), atol=1e-12)
    assert abs(np.logaddexp.reduce(ens)) < 1e-10
    assert np.ptp(singles, 0).max() > 1e-3  # the sets are different models


@pytest.mark.parametrize("kind", ["made2_mask2", "made2_mask2_direct"])
def test_made_ensemble_parity(float64, kind):
    """Both backends' ensembles agree on the same weights (1e-5, float64)."""
    p, n = build(P, kind), build(N, kind)
    x = all_binary(D)
    np.testing.assert_allclose(
        num(p.log_prob_ensemble(arr(P, x), par.Bernoulli())),
        num(n.log_prob_ensemble(arr(N, x), nar.Bernoulli())),
        atol=1e-5,
    )


@pytest.mark.parametrize("kind", ["made2_mask2", "made2_mask2_direct"])
def test_made_traced_mask_index_under_jit(float64, kind):
    """NumPyro: a traced ``mask_index`` (drawn per minibatch inside jit) selects the same
    set as the static one: the same outputs up to float64 rounding (compiled and eager code
    may round differently; two different sets differ by more than 1e-3, as the test above
    shows)."""
    net = build(N, kind)
    x = jnp.asarray(all_binary(D))
    fn = jax.jit(lambda k: net(x, mask_index=k))
    for k in range(4):
        np.testing.assert_allclose(
            np.asarray(fn(k)), np.asarray(net.with_mask(k)(x)), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_made_with_direct_connections_contains_the_fvsbn(float64, lib):
    """With the hidden path's output weights at zero, a MADE's direct connections are an
    FVSBN: the same weights give the same log-likelihood (on every mask set, whose order
    the direct mask follows)."""
    fvsbn = build(lib, "fvsbn")
    w = fvsbn.get_weights()
    x = all_binary(D)
    made = lib.MADE(D, [6], 1, seed=1, direct=True)
    mw = random_weights(made.get_weights(), 5)
    mw["layers.1.weight"] = np.zeros_like(mw["layers.1.weight"])
    mw["layers.1.bias"] = np.asarray(w["bias"])
    mw["direct.weight"] = np.asarray(w["weight"])
    made = made.set_weights(mw)
    head = bernoulli(lib)
    np.testing.assert_allclose(
        log_prob(lib, made, head, x), log_prob(lib, fvsbn, head, x), atol=1e-12
    )
    fresh = lib.MADE(D, [6], 1, seed=1, direct=True)
    assert not np.any(num(fresh(arr(lib, x))))  # a fresh MADE outputs zeros, direct or not


def test_made_direct_mask_follows_each_sets_order():
    """Output ``i`` reads input ``j`` directly exactly when ``j`` comes before ``i`` in the
    set's order, for every parameter row; the mask is the same for set 0 whatever the
    seed."""
    for k in range(3):
        pos = masks.made_mask_positions(5, [2, 0, 4, 1, 3], k, seed=9)
        m = masks.made_direct_mask(5, 2, [2, 0, 4, 1, 3], k, seed=9)
        assert m.shape == (10, 5)
        want = np.array([[pos[j] < pos[i] for j in range(5)] for i in range(5)])
        np.testing.assert_array_equal(m[0::2], want)
        np.testing.assert_array_equal(m[1::2], want)
    np.testing.assert_array_equal(
        masks.made_direct_mask(5, 1, None, 0, seed=1), masks.made_direct_mask(5, 1, None, 0, 2)
    )
    for bad in (dict(num_params=1.5), dict(num_params=True), dict(num_params=0)):
        with pytest.raises(ConfigError, match="num_params must be a positive integer"):
            masks.made_direct_mask(4, **bad)
    for bad in (True, -1, 1.0):
        with pytest.raises(ConfigError, match="mask_index must be an integer"):
            masks.made_direct_mask(4, 1, None, bad)


def test_mask_sets_numpy():
    """Set k >= 1 is drawn from seed + k (the same on every call), its hidden degrees lie
    in [min of the layer below, D - 1]; set 0 ignores the seed."""
    a = masks.made_degrees(5, [6, 6], mask_index=3, seed=10)
    b = masks.made_degrees(5, [6, 6], mask_index=2, seed=11)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert sorted(a[0]) == [1, 2, 3, 4, 5]
    assert a[1].min() >= a[0].min() and a[2].min() >= a[1].min() and a[2].max() <= 4
    zero = masks.made_masks(5, [6], mask_index=0, seed=7)
    assert all(np.array_equal(u, v) for u, v in zip(zero, masks.made_masks(5, [6]), strict=True))
    assert masks.sampling_order([2, 0, 1]) == (1, 2, 0)


# -- one-line errors ----------------------------------------------------------------------


@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_bad_input_one_line_errors(float64, lib):
    """Wrong event size, a context for an unconditional model, a head FVSBN/NADE do not
    support, bad noise, a bad prefix, bad sizes and mask settings: one-line errors."""
    cases = []
    for kind in ("fvsbn", "nade"):
        net = build(lib, kind)
        cases += [
            (lambda net=net: net(arr(lib, np.zeros((2, D + 1)))), DataError, r"\(4,\)"),
            (
                lambda net=net: net(arr(lib, np.zeros(D)), arr(lib, np.zeros(2))),
                ConfigError,
                "unconditional",
            ),
            (
                lambda net=net: net.sample(arr(lib, np.zeros((2, D, 3))), categorical(lib, 3)),
                ConfigError,
                "Bernoulli",
            ),
            (
                lambda net=net: net.plated(None, categorical(lib, 3)),
                ConfigError,
                "Bernoulli",
            ),
            (
                lambda net=net: net.sample(arr(lib, np.zeros((2, D + 1))), bernoulli(lib)),
                DataError,
                "noise",
            ),
            (
                lambda net=net: net.sample(
                    arr(lib, np.zeros((2, D))), bernoulli(lib), prefix=(np.zeros((2, D)), D + 1)
                ),
                DataError,
                "count",
            ),
            (
                lambda net=net: net.sample(
                    arr(lib, np.zeros((2, D))), bernoulli(lib), prefix=(np.zeros((3, D)), 1)
                ),
                DataError,
                "prefix",
            ),
        ]
    made = build(lib, "made")
    cases += [
        (lambda: lib.FVSBN(0), ConfigError, "dim"),
        (lambda: lib.NADE(4, 0), ConfigError, "hidden"),
        (lambda: lib.MADE(4, [5], 1, num_masks=0), ConfigError, "num_masks"),
        (lambda: lib.MADE(4, [5], 1, num_masks=2, mask_index=2), ConfigError, "mask_index"),
        (lambda: lib.MADE(4, [5], 1, agnostic="orders"), ConfigError, "mask-set kind"),
        (lambda: lib.MADE(4, [5], 1, direct="none"), ConfigError, "direct must be True"),
        (lambda: lib.MADE(4, [5], 1, direct=2), ConfigError, "direct must be True"),
        (lambda: lib.MADE(4, [5], 1.5), ConfigError, "num_params"),
        (lambda: made.with_mask(1), ConfigError, "mask_index"),
        (lambda: made(arr(lib, np.zeros(D)), mask_index=3), ConfigError, "mask_index"),
        (lambda: made.sample(arr(lib, np.zeros((2, D))), categorical(lib, 2)), ConfigError, "2"),
        (
            lambda: made.log_prob_ensemble(arr(lib, np.zeros((2, 3))), bernoulli(lib)),
            DataError,
            r"\(4,\)",
        ),
    ]
    for fn, kind, match in cases:
        with pytest.raises(kind, match=match) as info:
            fn()
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lib", [P, N], ids=["pyro", "numpyro"])
def test_base_density_samples_and_scores(float64, lib, kind):
    """Through the base's AutoregressiveDensity: draws are (n, D) binary rows (the
    network's cached sampler on the base's noise) and its log_prob is the efficient one."""
    net, head = build(lib, kind), bernoulli(lib)
    density = (par if lib is P else nar).AutoregressiveDensity(net, head)
    if lib is P:
        x = num(density.sample(6))
        lp = num(density.log_prob(torch.as_tensor(x)))
    else:
        x = np.asarray(density.sample(jax.random.PRNGKey(0), 6))
        lp = np.asarray(density.log_prob(jnp.asarray(x)))
    assert x.shape == (6, D) and set(np.unique(x)) <= {0.0, 1.0}
    np.testing.assert_allclose(lp, log_prob(lib, net, head, x), atol=1e-12)


# -- MADE's hidden degrees: spread, and the cyclic scheme old runs keep -----------------------


def _reach(masks):
    """``reach[i, j]``: output ``i`` depends on input ``j`` through some path of the masks."""
    reach = masks[0].astype(np.int64)
    for m in masks[1:]:
        reach = (m.astype(np.int64) @ reach > 0).astype(np.int64)
    return reach.astype(bool)


@pytest.mark.parametrize("hidden", [(3,), (5, 4), (40,), (9, 60)])
@pytest.mark.parametrize("context", [False, True])
def test_spread_degrees_are_autoregressive_and_reach_the_last_input(hidden, context):
    """Set 0 with ``degrees="spread"``: output ``i`` reads only inputs before it, and the
    last output reads every other input, whatever the widths (cyclic degrees in layers
    narrower than ``D - 1`` left the last inputs unread)."""
    from ppgen.models.masks import made_degrees, made_masks

    d = 30
    order = np.random.default_rng(3).permutation(d)
    masks = made_masks(d, hidden, order=order, context=context)
    reach = _reach(masks)
    before = order[None, :] < order[:, None]  # input j is generated before input i
    assert not (reach & ~before).any()
    last = int(np.argmax(order))
    assert reach[last].sum() == d - 1
    for layer in made_degrees(d, hidden, order=order, context=context)[1:]:
        assert layer.min() == (0 if context else 1) and layer.max() == d - 1


def test_cyclic_degrees_are_what_earlier_runs_were_trained_with():
    """``degrees="cyclic"`` is the scheme runs before 2026-12 used: a layer of 500 on 784
    inputs holds degrees 1..500, so the last output reads only the first 500 inputs. A run
    config without ``degrees`` reads back as cyclic; a new one is spread."""
    from ppgen.config import RunConfig, make_config
    from ppgen.models.masks import made_degrees, made_masks

    assert made_degrees(784, (500,), degrees="cyclic")[1].max() == 500
    assert _reach(made_masks(784, (500, 500), degrees="cyclic"))[-1].sum() == 500
    assert _reach(made_masks(784, (500, 500)))[-1].sum() == 783
    new = make_config("made", dataset="digits")
    assert new.options.degrees == "spread"
    raw = json.loads(new.to_json())
    assert RunConfig.from_json(raw).options.degrees == "spread"
    del raw["options"]["degrees"]
    assert RunConfig.from_json(raw).options.degrees == "cyclic"


@pytest.mark.parametrize("models", [N, P], ids=["numpyro", "pyro"])
def test_an_unknown_degree_scheme_is_refused_in_one_line(models):
    with pytest.raises(ConfigError, match="unknown MADE degree scheme 'even'") as err:
        models.MADE(6, (4,), 1, degrees="even")
    assert "\n" not in str(err.value)
