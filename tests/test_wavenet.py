"""WaveNet on both backends: causality and the receptive field measured from gradients, the
efficient likelihood against the plated conditionals and against normalisation, parity of
weights, logits and samples across backends, cached sampling against naive sampling (with and
without a prefix and conditioning), a cached NumPyro sampler traced once, and one-line errors.
"""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro.infer.util import log_density
from pyro import poutine

import ppgen.models.numpyro as mod_j
import ppgen.models.numpyro.ar as nar
import ppgen.models.pyro as mod_t
import ppgen.models.pyro.ar as par
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.models.wavenet import wavenet_plan
from tests.ar_checks import assert_autoregressive, perturbation_dependencies

# Tiny networks: 5 levels, 2 layers x 2 stacks (receptive field 7; 13 with kernel 3), run a
# few steps past the receptive field.
SIZES = dict(channels=5, residual_channels=4, skip_channels=6, layers=2, stacks=2, seed=1)
CONDITIONING = {
    "none": {},
    "global": {"global_dim": 3},
    "local": {"local_dim": 2},
    "both": {"global_dim": 3, "local_dim": 2, "kernel_size": 3},
}


def categorical(backend, num_classes):
    """The base's ``Categorical(K)`` head of ``backend`` (draws from uniform noise)."""
    return (par if backend.name == "pyro" else nar).Categorical(num_classes)


class CountingCategorical(nar.Categorical):
    """NumPyro's Categorical head counting how often ``draw`` runs (under jit: traces)."""

    def __init__(self, num_classes):
        super().__init__(num_classes)
        self.draws_traced = 0

    def draw(self, params, noise):
        self.draws_traced += 1
        return super().draw(params, noise)


def uniform(shape, seed):
    """Uniform noise in (0, 1), the noise every head draws from."""
    return np.random.default_rng(seed).uniform(1e-12, 1.0, shape)


def gumbel_max(logits, u):
    """The Categorical head's draw, in numpy (Gumbel-max on uniform noise)."""
    return np.argmax(logits - np.log(-np.log(u)), -1)


def build(backend, **kwargs):
    return backend.models.WaveNet(**{**SIZES, **kwargs})


def context_for(kwargs, batch, length, seed=0):
    """Numpy conditioning for a network built with ``kwargs`` (``None`` where it has none)."""
    rng = np.random.default_rng(seed)
    glob = rng.normal(size=(*batch, kwargs["global_dim"])) if "global_dim" in kwargs else None
    local = (
        rng.normal(size=(*batch, length, kwargs["local_dim"])) if "local_dim" in kwargs else None
    )
    if glob is not None and local is not None:
        return glob, local
    return glob if glob is not None else local


def to_backend(backend, context):
    if context is None:
        return None
    if isinstance(context, tuple):
        return tuple(backend.array(c) for c in context)
    return backend.array(context)


def dependence(backend, net, length, context=None):
    """``dep[t, s]``: does any output at ``t`` have a non-zero gradient with respect to the
    one-hot input at ``s``? Exact zeros, from the full Jacobian at 4 random real inputs (a
    batch; one point alone may sit where a ReLU is off for every unit)."""
    x = np.random.default_rng(0).normal(size=(4, length, net.channels))
    if backend.name == "pyro":
        jac = torch.autograd.functional.jacobian(
            lambda v: net.from_one_hot(v, context).sum(0), torch.tensor(x), vectorize=True
        ).numpy()
    else:  # the whole Jacobian as one compiled program (eager jacrev dispatches op by op)
        fn = lambda v, net, context: net.from_one_hot(v, context).sum(0)  # noqa: E731
        jac = np.asarray(eqx.filter_jit(jax.jacrev(fn))(jnp.asarray(x), net, context))
    return (jac != 0).any(axis=(1, 2, 4))  # (T, num_params, batch, T, channels) -> (T, T)


# -- causality and the receptive field -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONDITIONING))
def test_receptive_field_measured_from_gradients(backend, float64, name):
    """Output t depends on exactly x[t - rf .. t - 1]: exact zeros at and after t (the
    autoregressive property) and before t - rf (the receptive field the dilations imply)."""
    kwargs = CONDITIONING[name]
    net = build(backend, **kwargs)
    rf = 1 + (net.plan.kernel_size - 1) * 2 * (1 + 2)  # two stacks of dilations 1, 2
    assert net.receptive_field == rf
    length = rf + 6
    context = to_backend(backend, context_for(kwargs, (4,), length))
    dep = dependence(backend, net, length, context)
    t, s = np.indices((length, length))
    np.testing.assert_array_equal(dep, (s < t) & (s >= t - rf))


def test_integer_codes_autoregressive(backend):
    """On integer codes (no gradient): changing x_s changes no output at or before s (the
    shared AR check, by perturbation), and does change the output at s + 1."""
    net = build(backend)
    x = np.random.default_rng(7).integers(0, 5, 10)
    dep = perturbation_dependencies(net, x, values=5)
    assert_autoregressive(dep, net.order_for(10))
    assert dep[np.arange(1, 10), np.arange(9)].all()


def test_receptive_field_of_the_paper():
    """Ten layers of kernel 2 (dilations 1 .. 512) see 1024 samples; stacks add up."""

    def rf(layers, stacks=1, kernel_size=2):
        return wavenet_plan(256, 64, 256, layers, stacks, kernel_size, 0, 0, None).receptive_field

    assert rf(10) == 1024
    assert rf(10, stacks=3) == 1 + 3 * 1023
    assert rf(4, kernel_size=3) == 1 + 2 * 15


# -- likelihoods -----------------------------------------------------------------------------


def density(backend, net, head):
    return (par if backend.name == "pyro" else nar).AutoregressiveDensity(net, head)


def efficient_log_prob(backend, net, head, x, context):
    """The base's one-pass ``log p(x)`` per row (``AutoregressiveDensity.log_prob``)."""
    return backend.numpy(density(backend, net, head).log_prob(x, context))


def plated_log_prob(backend, net, head, x, context):
    """The plated program's log-likelihood (the base's ``plated_model`` wraps the network's
    ``plated`` form in the "data" plate), summed over the batch."""
    model = density(backend, net, head).plated_model
    if backend.name == "pyro":
        return poutine.trace(model).get_trace(x, context).log_prob_sum().item()
    return float(log_density(model, (x, context), {}, {})[0])


@pytest.mark.parametrize("name", sorted(CONDITIONING))
def test_efficient_equals_plated(backend, float64, name):
    """One teacher-forced pass scores the same as the T conditionals x_t | x_<t written as
    sample sites (float64, 1e-5: only the summation order differs)."""
    kwargs = CONDITIONING[name]
    net = build(backend, **kwargs)
    head = categorical(backend, net.channels)
    length = net.receptive_field + 4
    x = backend.array(np.random.default_rng(1).integers(0, net.channels, (3, length)))
    context = to_backend(backend, context_for(kwargs, (3,), length))
    efficient = efficient_log_prob(backend, net, head, x, context)
    assert efficient.shape == (3,)
    plated = plated_log_prob(backend, net, head, x, context)
    np.testing.assert_allclose(efficient.sum(), plated, rtol=0, atol=1e-5)


def test_plated_form_samples_sites_in_order(backend):
    """With x None the plated form is a generative program: sites x_0 .. x_{T-1}, each a
    code of the plate's batch shape."""
    net = build(backend, layers=2, stacks=1)
    head = categorical(backend, net.channels)

    def model():
        with backend.ppl.plate("data", 4):
            return net.plated(None, head, length=6)

    sites = backend.trace(model)
    assert [n for n in sites if n.startswith("x_")] == [f"x_{t}" for t in range(6)]
    assert all(tuple(sites[f"x_{t}"]["value"].shape) == (4,) for t in range(6))


def test_probabilities_sum_to_one(backend, float64):
    """Over all 2^6 binary sequences (channels 2), exp(log p(x)) sums to 1."""
    net = build(backend, channels=2, layers=2, stacks=1, global_dim=2)
    head = categorical(backend, 2)
    x = backend.array(np.array(list(itertools.product([0, 1], repeat=6))))
    context = backend.array(np.array([0.3, -1.2]))
    total = np.exp(efficient_log_prob(backend, net, head, x, context)).sum()
    np.testing.assert_allclose(total, 1.0, rtol=0, atol=1e-10)


def test_density_samples_and_trains(backend, float64):
    """Through the base's AutoregressiveDensity: the cached and naive draws agree for the
    same seed, and the one-pass log-likelihood gives every weight a gradient."""
    net = build(backend, global_dim=3)
    model = density(backend, net, categorical(backend, 5))
    voice = backend.array(np.eye(3)[[0, 2]])  # two one-hot voices
    draws = [
        backend.numpy(backend.call(model.sample, 2, voice, 12, cached=cached, seed=3))
        for cached in (True, False)
    ]
    assert draws[0].shape == (2, 12)
    np.testing.assert_array_equal(draws[0], draws[1])
    x = backend.array(draws[0])
    if backend.name == "pyro":
        params = dict(net.named_parameters())
        grads = torch.autograd.grad(-model.log_prob(x, voice).sum(), list(params.values()))
        grads = dict(zip(params, (g.numpy() for g in grads), strict=True))
    else:
        grads = eqx.filter_jit(  # one compiled program, not op-by-op dispatch
            eqx.filter_grad(
                lambda n: -nar.AutoregressiveDensity(n, model.head).log_prob(x, voice).sum()
            )
        )(net).weights
    assert grads.keys() == net.get_weights().keys()
    assert all(np.abs(np.asarray(g)).max() > 0 for g in grads.values())


# -- parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONDITIONING))
def test_parity_across_backends(float64, name):
    """The same seed gives the same weights; the same weights the same logits (1e-5), and the
    same noise the same samples, on both backends."""
    kwargs = CONDITIONING[name]
    net_t = mod_t.WaveNet(**{**SIZES, **kwargs})
    net_j = mod_j.WaveNet(**{**SIZES, **kwargs, "seed": 7})
    weights = net_t.get_weights()
    assert weights.keys() == net_j.get_weights().keys()
    for key, value in mod_j.WaveNet(**{**SIZES, **kwargs}).get_weights().items():
        np.testing.assert_array_equal(value, weights[key])  # the same seeded draw
    net_j = net_j.set_weights(weights)
    length = net_t.receptive_field + 5
    x = np.random.default_rng(2).integers(0, 5, (2, length))
    context = context_for(kwargs, (2,), length)
    ctx_t = None if context is None else jax.tree.map(torch.tensor, context)
    ctx_j = None if context is None else jax.tree.map(jnp.asarray, context)
    logits_t = net_t(torch.tensor(x), ctx_t).detach().numpy()
    logits_j = np.asarray(net_j(jnp.asarray(x), ctx_j))
    assert logits_t.shape == (2, length, 5)
    np.testing.assert_allclose(logits_t, logits_j, rtol=0, atol=1e-5)

    noise = uniform((2, length, 5), seed=3)
    draw_t = net_t.sample(torch.tensor(noise), par.Categorical(5), ctx_t).numpy()
    draw_j = net_j.sample(jnp.asarray(noise), nar.Categorical(5), ctx_j)
    np.testing.assert_array_equal(draw_t, np.asarray(draw_j))


# -- sampling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prefix_length"), [("none", 0), ("global", 4), ("local", 0), ("both", 4)]
)
def test_cached_sampling_equals_naive(backend, float64, name, prefix_length):
    """Paine et al.'s queues draw exactly the naive sampler's codes from the same noise, over
    a batch (2, 3) and past the receptive field; the draw is the head's draw on the
    teacher-forced logits at every step, and a prefix is kept as given."""
    kwargs = CONDITIONING[name]
    net = build(backend, **kwargs)
    head = categorical(backend, net.channels)
    length = net.receptive_field + 8
    rng = np.random.default_rng(4)
    noise = backend.array(uniform((2, 3, length, net.channels), seed=4))
    context = to_backend(backend, context_for(kwargs, (2, 3), length))
    prefix = None
    if prefix_length:
        prefix = backend.array(rng.integers(0, net.channels, (3, prefix_length)))  # broadcast
    cached = backend.numpy(net.sample(noise, head, context, cached=True, prefix=prefix))
    naive = backend.numpy(net.sample(noise, head, context, cached=False, prefix=prefix))
    assert cached.shape == (2, 3, length)
    np.testing.assert_array_equal(cached, naive)
    if prefix_length:
        np.testing.assert_array_equal(
            cached[..., :prefix_length], np.broadcast_to(backend.numpy(prefix), (2, 3, 4))
        )
    logits = backend.numpy(net(backend.array(cached), context))
    redrawn = gumbel_max(logits, backend.numpy(noise))
    np.testing.assert_array_equal(redrawn[..., prefix_length:], cached[..., prefix_length:])
    assert len(np.unique(cached)) > 1  # the draws vary (not a constant sequence)


def test_numpyro_samplers_trace_once():
    """The NumPyro samplers jit as one program: the head's draw is traced once for a 64-step
    draw (one lax.scan / fori_loop body, no Python loop over time), and the compiled draw
    equals the eager one."""
    net = mod_j.WaveNet(**SIZES)
    noise = nar.uniform_noise(jax.random.PRNGKey(0), (2, 64, 5))
    for cached in (True, False):
        head = CountingCategorical(5)
        draw = eqx.filter_jit(
            lambda net, noise, head=head, c=cached: net.sample(noise, head, cached=c)
        )
        jitted = draw(net, noise)
        assert head.draws_traced == 1
        draw(net, noise * 0.5)  # new values, same shapes: no new trace
        assert head.draws_traced == 1
        np.testing.assert_array_equal(jitted, net.sample(noise, head, cached=cached))


# -- conditioning is used ------------------------------------------------------------------


def test_global_conditioning_changes_every_output(backend):
    net = build(backend, global_dim=3)
    x = backend.array(np.random.default_rng(5).integers(0, 5, (1, 12)))
    a = backend.numpy(net(x, backend.array(np.array([1.0, 0.0, 0.0]))))
    b = backend.numpy(net(x, backend.array(np.array([0.0, 1.0, 0.0]))))
    assert (np.abs(a - b).max(axis=-1) > 0).all()


def test_local_conditioning_is_causal_and_used(backend):
    """Changing the local features at step 6 changes the output at 6 (and may change later
    ones) but never an earlier one."""
    net = build(backend, local_dim=2)
    rng = np.random.default_rng(6)
    x = backend.array(rng.integers(0, 5, (1, 12)))
    local = rng.normal(size=(1, 12, 2))
    moved = local.copy()
    moved[:, 6] += 1.0
    a = backend.numpy(net(x, backend.array(local)))
    b = backend.numpy(net(x, backend.array(moved)))
    changed = np.abs(a - b).max(axis=-1)[0] > 0
    assert not changed[:6].any() and changed[6]


# -- bad input -------------------------------------------------------------------------------


def one_line(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_bad_inputs_get_one_line_errors(backend):
    net = build(backend, local_dim=2)
    head = categorical(backend, 5)
    x = backend.array(np.zeros((2, 10), dtype=np.int64))
    with pytest.raises(DataError) as e:
        net(x, backend.array(np.zeros((2, 9, 2))))
    assert "9 time steps" in one_line(e)
    noise = backend.array(np.zeros((2, 10, 5)))
    with pytest.raises(DataError) as e:
        net.sample(noise, head, backend.array(np.zeros((2, 11, 2))))
    one_line(e)
    with pytest.raises(DataError) as e:
        net(x, backend.array(np.zeros((2, 10, 3))))
    one_line(e)
    with pytest.raises(ConfigError) as e:
        net(x)  # local conditioning missing
    one_line(e)
    with pytest.raises(ConfigError) as e:
        build(backend)(x, backend.array(np.zeros((2, 10, 2))))  # not conditioned
    one_line(e)
    with pytest.raises(DataError) as e:
        build(backend)(backend.array(np.full((2, 10), 5)))  # codes 0..4
    assert "0..4" in one_line(e)
    with pytest.raises(DataError) as e:
        net.sample(
            noise,
            head,
            backend.array(np.zeros((2, 10, 2))),
            prefix=backend.array(np.zeros((2, 12), dtype=np.int64)),
        )
    one_line(e)
    with pytest.raises(ConfigError) as e:
        net.sample(noise, categorical(backend, 4), backend.array(np.zeros((2, 10, 2))))
    one_line(e)
    with pytest.raises(CheckpointError) as e:
        net.set_weights({k: v for k, v in net.get_weights().items() if k != "input.bias"})
    one_line(e)


@pytest.mark.parametrize(
    "kwargs",
    [{"kernel_size": 1}, {"layers": 0}, {"channels": 1}, {"global_dim": -1}, {"stacks": 1.5}],
)
def test_bad_sizes_get_one_line_errors(backend, kwargs):
    with pytest.raises(ConfigError) as e:
        build(backend, **kwargs)
    one_line(e)


@pytest.mark.parametrize("name", ["local", "both"])
def test_distribution_reads_the_batch_shape_of_any_context(backend, name):
    """AutoregressiveDistribution takes WaveNet's local features (*batch, T, L) and its
    (global, local) pair: the batch shape is the context's batch, draws with a sample shape
    broadcast the context, and log_prob scores them."""
    kwargs = CONDITIONING[name]
    net = build(backend, **kwargs)
    context = to_backend(backend, context_for(kwargs, (2,), 9))
    m = par if backend.name == "pyro" else nar
    d = m.AutoregressiveDistribution(net, categorical(backend, 5), context, length=9)
    assert tuple(d.batch_shape) == (2,) and tuple(d.event_shape) == (9,)
    if backend.name == "pyro":
        x = d.sample((3,))
    else:
        x = d.sample(jax.random.PRNGKey(0), (3,))
    assert tuple(x.shape) == (3, 2, 9)
    assert np.isfinite(backend.numpy(d.log_prob(x[0]))).all()
