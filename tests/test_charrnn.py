"""char-RNN (Karpathy 2015) on both backends: causal in time (exact-zero gradients), the plated
form scores as the teacher-forced one, the probabilities of every sequence sum to one, the
backends agree on torch-layout weights, cached sampling is the naive sampler, temperature is
a division of the logits, and bad input gets one line."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro.infer.util import log_density
from pyro import poutine

import ppgen.models.numpyro as mod_j
import ppgen.models.numpyro.ar as nar
import ppgen.models.pyro as mod_t
import ppgen.models.pyro.ar as par
from ppgen.errors import CheckpointError, ConfigError, DataError
from tests.ar_checks import (
    assert_autoregressive,
    log_prob_of,
    perturbation_dependencies,
    plated_log_prob,
    plated_sites,
)

V, H, T = 5, 6, 6  # tiny: every test runs in seconds


class Pyro:
    name = "pyro"
    CharRNN = mod_t.CharRNN
    ar = par
    head = par.Categorical

    @staticmethod
    def array(a):
        a = np.asarray(a)
        return torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else None)

    @staticmethod
    def numpy(a):
        return a.detach().numpy()

    @staticmethod
    def noise(head, shape, seed):
        """Uniform noise ``(*shape, *head.noise_shape)``, what every head draws from."""
        torch.manual_seed(seed)
        return par.uniform_noise((*shape, *head.noise_shape))

    @staticmethod
    def jacobian(f, u):
        return torch.autograd.functional.jacobian(f, u).numpy()

    @staticmethod
    def plated_log_prob(net, head, x):
        def model(x):
            with pyro.plate("data", x.shape[0]):
                net.plated(x, head)

        tr = poutine.trace(model).get_trace(x)
        assert [n for n in tr.nodes if n.startswith("x_")] == [f"x_{t}" for t in range(T)]
        return tr.log_prob_sum().item()

    @staticmethod
    def plated_draw(net, head, n, length):
        def model():
            with pyro.plate("data", n):
                return net.plated(None, head, length=length)

        return poutine.trace(model).get_trace()

    @staticmethod
    def jit(f):
        return f


class NumPyro:
    name = "numpyro"
    CharRNN = mod_j.CharRNN
    ar = nar
    head = nar.Categorical

    @staticmethod
    def array(a):
        a = np.asarray(a)
        return jnp.asarray(a) if a.dtype.kind in "iu" else jnp.asarray(a, dtype=float)

    @staticmethod
    def numpy(a):
        return np.asarray(a)

    @staticmethod
    def noise(head, shape, seed):
        """Uniform noise ``(*shape, *head.noise_shape)``, what every head draws from."""
        return nar.uniform_noise(jax.random.PRNGKey(seed), (*shape, *head.noise_shape))

    @staticmethod
    def jacobian(f, u):
        return np.asarray(jax.jacfwd(f)(u))

    @staticmethod
    def plated_log_prob(net, head, x):
        def model(x):
            with numpyro.plate("data", x.shape[0]):
                net.plated(x, head)

        tr = numpyro.handlers.trace(model).get_trace(x)
        assert [n for n in tr if n.startswith("x_")] == [f"x_{t}" for t in range(T)]
        return float(log_density(model, (x,), {}, {})[0])

    @staticmethod
    def plated_draw(net, head, n, length):
        def model():
            with numpyro.plate("data", n):
                return net.plated(None, head, length=length)

        return numpyro.handlers.trace(numpyro.handlers.seed(model, 0)).get_trace()

    @staticmethod
    def jit(f):
        return jax.jit(f)


BACKENDS = {"pyro": Pyro, "numpyro": NumPyro}


@pytest.fixture(params=sorted(BACKENDS))
def b(request):
    return BACKENDS[request.param]


def _ids(shape, seed=0):
    return np.random.default_rng(seed).integers(0, V, shape)


def _weights(seed=1, embedding=3, layers=2):
    """Seeded weights with every entry moved off its initial value (``start`` and
    ``bias_hh`` included, which start at zero and at a draw the other backend must keep)."""
    w = mod_t.CharRNN(V, hidden=H, layers=layers, embedding=embedding, seed=seed).get_weights()
    rng = np.random.default_rng(seed + 100)
    return {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in w.items()}


def _net(b, embedding=3, layers=2, seed=1):
    net = b.CharRNN(V, hidden=H, layers=layers, embedding=embedding, seed=seed)
    return net.set_weights(_weights(seed, embedding, layers))


def _one_line(err):
    assert "\n" not in str(err.value) and str(err.value)


# -- the autoregressive property -------------------------------------------------------------


@pytest.mark.parametrize("embedding", [None, 3])
def test_logits_at_t_depend_on_inputs_before_t_only(b, float64, embedding):
    net = _net(b, embedding)
    u = b.array(np.random.default_rng(0).standard_normal((T, embedding or V)))
    jac = b.jacobian(lambda u: net.logits_from_inputs(u)[0], u)  # (T, V, T, E)
    for t, s in itertools.product(range(T), range(T)):
        block = np.abs(jac[t, :, s, :]).max()
        if s >= t:
            assert block == 0.0, (t, s)  # exactly: no path from u_s to the logits at t
        else:
            assert block > 1e-8, (t, s)  # and every earlier input is read


def test_changing_a_token_moves_only_later_logits(b, float64):
    """The same on the ids themselves (``tests/ar_checks.py``): output t moves with every
    id before t and with none at or after t."""
    net = _net(b)
    dep = perturbation_dependencies(net, _ids((T,)), values=V)
    assert_autoregressive(dep, net.order_for(T))
    np.testing.assert_array_equal(dep, np.tril(np.ones((T, T), bool), -1))


# -- the plated form, normalisation ----------------------------------------------------------


@pytest.mark.parametrize("embedding", [None, 3])
def test_plated_log_likelihood_is_the_teacher_forced_one(b, float64, embedding):
    net, head = _net(b, embedding), b.head(V)
    x = _ids((4, T), seed=3)
    efficient = log_prob_of(net, head, x)  # AutoregressiveDistribution: one teacher-forced pass
    by_hand = b.numpy(head.log_prob(net(b.array(x)), b.array(x))).sum(-1)
    np.testing.assert_allclose(efficient, by_hand, atol=1e-12)
    # float64; only the order of the LSTM's sums differs (one pass against one per step)
    assert b.plated_log_prob(net, head, b.array(x)) == pytest.approx(efficient.sum(), abs=1e-8)
    assert plated_log_prob(net, head, x) == pytest.approx(efficient.sum(), abs=1e-8)
    assert plated_sites(net, head, x) == [f"x_{t}" for t in range(T)]


def test_probabilities_of_all_sequences_sum_to_one(b, float64):
    net, head = _net(b, embedding=None), b.head(V)
    x = np.array(list(itertools.product(range(V), repeat=3)))  # all 125 sequences, T = 3
    p = np.exp(log_prob_of(net, head, x))
    assert math.fsum(p) == pytest.approx(1.0, abs=1e-10)
    assert not np.allclose(p, 1 / V**3)  # x_0 is modelled too (from `start`), not uniform


def test_plated_form_without_data_is_a_generative_program(b, float64):
    net, head = _net(b), b.head(V)
    tr = b.plated_draw(net, head, n=3, length=4)
    sites = [n for n in (tr.nodes if b.name == "pyro" else tr) if n.startswith("x_")]
    assert sites == ["x_0", "x_1", "x_2", "x_3"]
    site = (tr.nodes if b.name == "pyro" else tr)["x_3"]
    assert tuple(site["value"].shape) == (3,)
    assert not site["is_observed"]


# -- parity on torch-layout weights ----------------------------------------------------------


@pytest.mark.parametrize("embedding", [None, 3])
@pytest.mark.parametrize("layers", [1, 2])
def test_backends_agree_on_plain_torch_lstm_weights(float64, embedding, layers):
    """A plain torch nn.LSTM + nn.Linear (torch's own random initialisation) is the reference:
    its state dict loads into both backends, which then compute its logits."""
    torch.manual_seed(5)
    lstm = torch.nn.LSTM(embedding or V, H, layers, batch_first=True)
    linear = torch.nn.Linear(H, V)
    emb = torch.randn(V, embedding) if embedding else torch.eye(V)
    start = torch.randn(embedding or V)
    w = {f"lstm.{k}": v.numpy() for k, v in lstm.state_dict().items()}
    w |= {f"output.{k}": v.numpy() for k, v in linear.state_dict().items()}
    w["start"] = start.numpy()
    if embedding:
        w["embedding.weight"] = emb.numpy()
    x = _ids((3, T), seed=4)
    u = torch.cat([start.expand(3, 1, -1), emb[torch.as_tensor(x[:, :-1])]], 1)
    with torch.no_grad():
        want = linear(lstm(u)[0]).numpy()
    for b in (Pyro, NumPyro):
        net = b.CharRNN(V, hidden=H, layers=layers, embedding=embedding).set_weights(w)
        np.testing.assert_allclose(b.numpy(net(b.array(x))), want, atol=1e-10)
        got = net.get_weights()  # torch's keys and layouts, unchanged by the round trip
        assert sorted(got) == sorted(w)
        for k in w:
            np.testing.assert_array_equal(got[k], w[k])


def test_the_same_seed_builds_the_same_network(float64):
    t = mod_t.CharRNN(V, hidden=H, layers=2, embedding=3, seed=7).get_weights()
    j = mod_j.CharRNN(V, hidden=H, layers=2, embedding=3, seed=7).get_weights()
    assert sorted(t) == sorted(j)
    for k in t:
        np.testing.assert_array_equal(t[k], j[k])
    x = _ids((2, T))
    np.testing.assert_allclose(
        Pyro.numpy(mod_t.CharRNN(V, H, 2, 3, seed=7)(Pyro.array(x))),
        NumPyro.numpy(mod_j.CharRNN(V, H, 2, 3, seed=7)(NumPyro.array(x))),
        atol=1e-10,
    )


def test_weights_of_another_shape_are_refused(b):
    net = b.CharRNN(V, hidden=H, layers=2)
    w = net.get_weights()
    with pytest.raises(CheckpointError) as err:
        net.set_weights({k: v for k, v in w.items() if k != "lstm.bias_hh_l1"})
    _one_line(err)
    with pytest.raises(CheckpointError):
        net.set_weights(b.CharRNN(V, hidden=H + 1, layers=2).get_weights())


# -- the carried state and sampling ------------------------------------------------------------


def test_stepping_the_state_gives_the_teacher_forced_logits(b, float64):
    net = _net(b)
    x = _ids((2, T), seed=6)
    want = b.numpy(net(b.array(x)))
    logits, state = net.step(net.initial_state(2), None)
    for t in range(T):
        np.testing.assert_allclose(b.numpy(logits), want[:, t], atol=1e-12)
        logits, state = net.step(state, b.array(x[:, t]))
    h, c = state
    assert tuple(h.shape) == tuple(c.shape) == (2, 2, H)  # (layers, batch, hidden)


@pytest.mark.parametrize("layers", [1, 3])
def test_teacher_forcing_from_a_carried_state_is_stepping(b, float64, layers):
    """``logits_from_inputs(u, state)`` (one pass, NumPyro's layer by layer) continues from a
    carried state exactly as stepping does, with the state's batch broadcast over the
    inputs' ``(3, 2)``, and returns the stepped state."""
    net = _net(b, embedding=None, layers=layers)
    start = _ids((2, 3), seed=4)
    _, state = net.step(net.initial_state(2), None)
    for t in range(start.shape[1]):  # a state that is not zero, batch (2,)
        _, state = net.step(state, b.array(start[:, t]))
    x = _ids((3, 2, T), seed=5)
    logits, last = net.logits_from_inputs(net.embed(b.array(x)), state)
    # stepping: the start vector, then x[..., :T-1]
    h, c = (np.broadcast_to(b.numpy(s)[:, None], (layers, 3, 2, H)) for s in state)
    stepped = (b.array(np.ascontiguousarray(h)), b.array(np.ascontiguousarray(c)))
    for t in range(T):
        if t == 0:
            step_logits, stepped = net.step(stepped, None)
        else:
            step_logits, stepped = net.step(stepped, b.array(x[..., t - 1]))
        np.testing.assert_allclose(b.numpy(logits)[..., t, :], b.numpy(step_logits), atol=1e-12)
    for got, want in zip(last, stepped, strict=True):
        assert tuple(got.shape) == (layers, 3, 2, H)
        np.testing.assert_allclose(b.numpy(got), b.numpy(want), atol=1e-12)


@pytest.mark.parametrize("prefix_length", [0, 3, T])
def test_cached_sampling_is_the_naive_sampler(b, prefix_length, temperature=0.6):
    net, head = _net(b), b.head(V)
    noise = b.noise(head, (4, 2, T), seed=2)  # batch (4, 2)
    prefix = b.array(_ids((4, 2, prefix_length), seed=8)) if prefix_length else None

    def draw(cached, temperature=temperature):
        return b.jit(
            lambda n, p: net.sample(n, head, cached=cached, prefix=p, temperature=temperature)
        )(noise, prefix)

    fast, naive = b.numpy(draw(True)), b.numpy(draw(False))
    assert fast.shape == (4, 2, T)
    np.testing.assert_array_equal(fast, naive)
    if prefix_length:
        np.testing.assert_array_equal(fast[..., :prefix_length], b.numpy(prefix))
    if prefix_length < T - 1:  # the noise is used: sequences differ across the batch
        assert len({tuple(r) for r in fast.reshape(8, T)[:, prefix_length:]}) > 1
    # and the AR base's reference sampler (a full pass per position) at temperature 1
    given = (
        None
        if prefix is None
        else b.array(np.pad(b.numpy(prefix), [(0, 0)] * 2 + [(0, T - prefix_length)]))
    )
    reference = b.ar.naive_sample(net, noise, head, start=prefix_length, x=given)
    np.testing.assert_array_equal(b.numpy(draw(True, 1.0)), b.numpy(reference))


def test_temperature_divides_the_logits(b):
    """Sampling at temperature tau is sampling at 1 from the net whose read-out is divided by
    tau (the logits are linear in it), for the same noise."""
    tau = 0.4
    net, head = _net(b), b.head(V)
    w = net.get_weights()
    sharp = b.CharRNN(V, hidden=H, layers=2, embedding=3).set_weights(
        w | {"output.weight": w["output.weight"] / tau, "output.bias": w["output.bias"] / tau}
    )
    noise = b.noise(head, (16, T), seed=3)
    a = b.numpy(net.sample(noise, head, temperature=tau))
    np.testing.assert_array_equal(a, b.numpy(sharp.sample(noise, head)))
    assert not np.array_equal(a, b.numpy(net.sample(noise, head)))


def test_any_length_works(b):
    net, head = _net(b), b.head(V)
    x = b.numpy(net.sample(b.noise(head, (2, 40), seed=0), head))
    assert x.shape == (2, 40) and x.min() >= 0 and x.max() < V
    assert b.numpy(net(b.array(x))).shape == (2, 40, V)


# -- bad input: one line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "temperature", [0, -1.0, float("nan"), float("inf"), True, 1e-45, 1e-300, 1e300]
)
def test_temperature_must_be_positive(b, temperature):
    """Zero, negative, not a number, and the tiny or huge values float32 logits cannot be
    divided by (1e-45 is 0 in float32: the draws were silently all code 0)."""
    net, head = _net(b), b.head(V)
    with pytest.raises(ConfigError, match="temperature") as err:
        net.sample(b.noise(head, (2, T), seed=0), head, temperature=temperature)
    _one_line(err)


def test_the_smallest_temperature_draws_greedily(b):
    """At ``MIN_TEMPERATURE`` every draw is the argmax of the logits: the same text from any
    noise (the greedy limit the refused smaller temperatures stand for)."""
    from ppgen.models.charrnn import MIN_TEMPERATURE

    net, head = _net(b), b.head(V)
    draws = [
        np.asarray(net.sample(b.noise(head, (2, T), seed=s), head, temperature=MIN_TEMPERATURE))
        for s in (0, 1)
    ]
    np.testing.assert_array_equal(draws[0], draws[1])


@pytest.mark.parametrize("bad", [-1, V, 1.5])
def test_tokens_outside_the_vocabulary_are_refused(b, bad):
    net, head = _net(b), b.head(V)
    x = _ids((2, T)).astype(float if bad == 1.5 else int)
    x[1, 2] = bad
    for call in (
        lambda: net(b.array(x)),
        lambda: net.sample(b.noise(head, (2, T), seed=0), head, prefix=b.array(x[:, :3])),
        lambda: net.step(net.initial_state(2), b.array(x[:, 2])),
        lambda: b.plated_log_prob(net, head, b.array(x)),
    ):
        with pytest.raises(DataError) as err:
            call()
        _one_line(err)
        if bad != 1.5:
            assert str(bad) in str(err.value) and f"{V} tokens" in str(err.value)


@pytest.mark.parametrize("length", [0, -3, 2.5, True])
def test_a_sequence_length_below_one_is_refused_in_one_line(b, length):
    """``length=0`` drew an empty array and ``-3`` failed inside the backend."""
    net, head = _net(b), b.head(V)
    with pytest.raises(ConfigError, match="sequence length must be an integer >= 1") as err:
        b.ar.AutoregressiveDistribution(net, head, length=length, batch_shape=(2,))
    _one_line(err)


def test_non_integer_codes_are_named(b):
    """A fractional code is named as such, not as a range that looks valid."""
    head = b.head(V)
    x = _ids((2, T)).astype(float)
    x[1, 2] = 1.5
    with pytest.raises(DataError, match="non-integer values such as 1.5"):
        head.check_values(b.array(x))


def test_integral_float_ids_are_read_as_ids(b, float64):
    """A trainer that casts data to the parameters' dtype passes ids as floats."""
    net, x = _net(b), _ids((2, T))
    np.testing.assert_array_equal(b.numpy(net(b.array(x.astype(float)))), b.numpy(net(b.array(x))))


def test_numpyro_ids_outside_the_vocabulary_under_jit_give_nan():
    """Under jit the ids cannot be checked; an unknown id must not read as another token."""
    for embedding in (None, 3):
        net = _net(NumPyro, embedding)
        x = jnp.asarray(_ids((2, T))).at[1, 2].set(V)
        logits = np.asarray(jax.jit(net.__call__)(x))
        assert np.isnan(logits[1, 3:]).all() and np.isfinite(logits[0]).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vocab_size": 1},
        {"vocab_size": V, "hidden": 0},
        {"vocab_size": V, "layers": 1.5},
        {"vocab_size": V, "embedding": 0},
        {"vocab_size": V, "hidden": True},
    ],
)
def test_bad_sizes_are_refused(b, kwargs):
    with pytest.raises(ConfigError) as err:
        b.CharRNN(**kwargs)
    _one_line(err)


def test_bad_calls_are_refused(b):
    net, head = _net(b), b.head(V)
    noise = b.noise(head, (2, T), seed=0)
    x = b.array(_ids((2, T)))
    cases = [
        (ConfigError, lambda: net(x, context=b.array(np.ones((2, 3))))),
        (ConfigError, lambda: net.sample(noise, head, prefix=b.array(_ids((2, T + 1))))),
        (DataError, lambda: net.sample(noise, head, prefix=b.array(_ids((3, 2))))),
        (ConfigError, lambda: net.sample(noise, b.head(V + 1))),
        (ConfigError, lambda: net.plated(None, head)),
        (DataError, lambda: net(b.array(np.zeros((2, 0), int)))),
    ]
    for kind, call in cases:
        with pytest.raises(kind) as err:
            call()
        _one_line(err)


# -- through the AR base: the distribution, the model-guide pair, ppgen's objectives -----------


def test_density_scores_samples_and_trains_through_the_base(backend, float64):
    """``AutoregressiveDensity(CharRNN, Categorical)``: ppgen's ELBO is the exact negative
    log-likelihood (no latents), its gradient reaches every weight, and ``sample`` draws
    sequences of the length asked for."""
    b = BACKENDS[backend.name]
    net, head = _net(b), b.head(V)
    density = b.ar.AutoregressiveDensity(net, head)
    x = _ids((3, T), seed=9)
    exact = -log_prob_of(net, head, x).sum()
    grads = backend.grads({"elbo": backend.inference.ELBO()}, density, x)["elbo"]
    assert len(grads) == len(net.get_weights())
    assert all(g is not None and np.abs(g).max() > 0 for g in grads.values())
    loss = backend.loss(backend.inference.ELBO(), density.model, density.guide, backend.array(x))
    assert loss == pytest.approx(exact, abs=1e-8)
    draws = b.numpy(backend.call(density.sample, 4, length=T + 3))
    assert draws.shape == (4, T + 3) and draws.min() >= 0 and draws.max() < V
