"""PixelCNN and Gated PixelCNN on both backends: the autoregressive property and the receptive
fields (the plain net's blind spot, none in the gated one) measured from exact Jacobians,
plated == efficient log-likelihood, normalisation over every tiny image, parity of weights,
outputs and samples, cached == naive sampling, completion, and one-line errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from pyro import poutine

import ppgen.inference.numpyro as ni
import ppgen.inference.pyro as pi
import ppgen.models.numpyro.pixelcnn as jpc
import ppgen.models.pyro.pixelcnn as tpc
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.models.conv_masks import horizontal_mask, pixelcnn_mask, window_starts
from tests.ar_checks import (
    assert_autoregressive,
    heads,
    log_prob_of,
    plated_log_prob,
    plated_sites,
    sample_with,
)

MODULES = {"pyro": tpc, "numpyro": jpc}


def head(backend, k=None, mixture=None):
    """Bernoulli (``k=None``), ``Categorical(k)`` or a mixture of ``mixture`` discretized
    logistics over ``k`` levels, from the AR base of ``backend``."""
    if mixture:
        return heads(backend).DiscretizedLogisticMixture(mixture, levels=k)
    return heads(backend).Bernoulli() if k is None else heads(backend).Categorical(k)


def noise(shape, hd, seed=0):
    """Uniform noise in (0, 1) for ``hd``: ``(*shape, *hd.noise_shape)``."""
    return np.random.default_rng(seed).uniform(1e-12, 1.0, (*shape, *hd.noise_shape))


def array(backend, a):
    a = np.array(a)
    if backend == "pyro":
        return torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else None)
    return jnp.asarray(a)


def numpy(a):
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


def make(backend, name, shape, **kwargs):
    return getattr(MODULES[backend], name)(shape, seed=3, **kwargs)


# -- receptive fields ----------------------------------------------------------------------


def field(backend, net, x, context=None):
    """``dep[p, q]``: output ``p`` (raster position) moves with input ``q``, from the exact
    Jacobian summed in absolute value over a batch of random inputs and the parameters.

    The net gets random weights everywhere, the masked entries too (the masks must hold
    them off), and biases of 3 so that ReLUs are open and no path is dead by chance."""
    rng = np.random.default_rng(7)
    weights = {
        k: rng.normal(0, 1, v.shape) if k.endswith("weight") else np.full(v.shape, 3.0)
        for k, v in net.get_weights().items()
    }
    net = net.set_weights(weights)
    n, h, w = x.shape

    def outputs(f):  # every pixel's (single) parameter summed over the batch: (H * W,)
        return lambda v, c: f(v, c).sum(0).reshape(h * w)

    if backend == "pyro":
        ctx = None if context is None else torch.as_tensor(context)
        f = outputs(net)
        jac = torch.autograd.functional.jacobian(
            lambda v: f(v, ctx), torch.as_tensor(x), vectorize=True
        ).numpy()
    else:
        ctx = None if context is None else jnp.asarray(context)
        jac = np.asarray(jax.jit(jax.jacrev(outputs(net)))(jnp.asarray(x), ctx))
    # Batch members are independent, so the sum over the batch cancels nothing.
    return (np.abs(jac.reshape(h * w, n, h * w)).sum(1)) > 0  # (out p, in q)


def plain_field(h, w, layers):
    """PixelCNN's field with a 3x3 mask-A input: ``(i - a, j + d)`` for ``a <= R``,
    ``-R <= d <= a`` (``d < 0`` in the pixel's own row), ``R = 1 + layers``."""
    reach = 1 + layers
    dep = np.zeros((h * w, h * w), dtype=bool)
    for i, j, a, d in itertools.product(range(h), range(w), range(h), range(-w, w)):
        if 0 <= i - a and 0 <= j + d < w and a <= reach and -reach <= d <= a and (a or d < 0):
            dep[i * w + j, (i - a) * w + j + d] = True
    return dep


def gated_field(h, w, layers):
    """Gated PixelCNN's field with 3x3 kernels: ``(i, j - d)`` for ``1 <= d <= L`` and
    ``(i - a, j + d)`` for ``1 <= a <= L + 1``, ``|d| <= L``: a rectangle, no blind spot."""
    dep = np.zeros((h * w, h * w), dtype=bool)
    for i, j, a, d in itertools.product(range(h), range(w), range(h), range(-w, w)):
        if 0 <= i - a and 0 <= j + d < w and abs(d) <= layers:
            if (a == 0 and d < 0) or 1 <= a <= layers + 1:
                dep[i * w + j, (i - a) * w + j + d] = True
    return dep


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_pixelcnn_field_is_autoregressive_with_the_blind_spot(float64, backend):
    net = make(backend, "PixelCNN", (6, 6), channels=8, layers=2, kernel_size=3)
    x = np.random.default_rng(0).random((4, 6, 6))
    dep = field(backend, net, x)
    assert_autoregressive(dep, net.order)  # output p never moves with an input q >= p
    np.testing.assert_array_equal(dep, plain_field(6, 6, 2))
    # The blind spot: pixel (2, 1) never sees (1, 3), above and to the right, though it
    # comes earlier and lies within the field's reach; depth does not help.
    deep = make(backend, "PixelCNN", (6, 6), channels=8, layers=4, kernel_size=3)
    dep = field(backend, deep, x)
    assert not dep[2 * 6 + 1, 1 * 6 + 3] and not dep[3 * 6 + 0, 2 * 6 + 2]
    assert dep[2 * 6 + 1, 1 * 6 + 2]
    assert_autoregressive(dep, deep.order)
    np.testing.assert_array_equal(dep, plain_field(6, 6, 4))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_gated_field_is_autoregressive_without_a_blind_spot(float64, backend):
    x = np.random.default_rng(1).random((3, 5, 5))
    context = np.eye(3)
    shallow = make(backend, "GatedPixelCNN", (5, 5), channels=4, layers=2, num_classes=3)
    dep = field(backend, shallow, x, context)
    np.testing.assert_array_equal(dep, gated_field(5, 5, 2))
    # Four layers cover a 5x5 image: every pixel sees every earlier pixel and no other.
    net = make(backend, "GatedPixelCNN", (5, 5), channels=4, layers=4)
    dep = field(backend, net, x)
    np.testing.assert_array_equal(dep, np.tril(np.ones((25, 25), dtype=bool), -1))


def test_masks_match_the_papers_figures():
    np.testing.assert_array_equal(pixelcnn_mask(3, "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(pixelcnn_mask(3, "B"), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(horizontal_mask(5, "A"), [[1, 1, 0]])
    np.testing.assert_array_equal(horizontal_mask(5, "B"), [[1, 1, 1]])
    np.testing.assert_array_equal(window_starts(6, 2, 3), [0, 0, 0, 1, 2, 3])


# -- likelihood ------------------------------------------------------------------------------


NETS = [
    ("PixelCNN", dict(channels=4, layers=1, kernel_size=3)),
    ("GatedPixelCNN", dict(channels=4, layers=2)),
    ("GatedPixelCNN", dict(channels=4, layers=2, num_classes=3)),
]


def _context(backend, kwargs, n):
    """One-hot classes ``0, 1, 2, 0, ...`` for a class-conditional net, else ``None``."""
    return array(backend, np.eye(3)[np.arange(n) % 3]) if kwargs.get("num_classes") else None


# (levels, head): binary Bernoulli, Categorical over 3 levels, 2 discretized logistics over 4.
HEADS = [(2, {}), (3, {"k": 3}), (4, {"k": 4, "mixture": 2})]
# Each net with each head once (a net reads every head's values the same way: x / (L - 1)).
NET_HEADS = [
    (*NETS[0], *HEADS[0]),
    (*NETS[0], *HEADS[2]),
    (*NETS[1], *HEADS[1]),
    (*NETS[2], *HEADS[0]),
    (*NETS[2], *HEADS[2]),
]


def _head_net(backend, name, shape, kwargs, levels, head_kw):
    hd = head(backend, **head_kw)
    return make(backend, name, shape, num_params=hd.num_params, levels=levels, **kwargs), hd


def _images(levels, n, shape, seed=0):
    x = np.random.default_rng(seed).integers(0, levels, (n, *shape))
    return x.astype(float) if levels == 2 else x


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs", "levels", "head_kw"), NET_HEADS)
def test_plated_form_scores_as_the_efficient_form(float64, backend, name, kwargs, levels, head_kw):
    net, hd = _head_net(backend, name, (3, 2), kwargs, levels, head_kw)
    x, ctx = _images(levels, 4, (3, 2)), _context(backend, kwargs, 4)
    want = log_prob_of(net, hd, x, ctx).sum()
    assert plated_sites(net, hd, x, ctx) == [f"x_{p}" for p in range(6)]
    assert abs(plated_log_prob(net, hd, x, ctx) - want) < 1e-5 * max(1.0, abs(want))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs"), NETS)
def test_plated_form_draws_when_x_is_none(float64, backend, name, kwargs):
    """Without x the plated form is a generative program; the efficient form scores its
    draws as the trace does."""
    net = make(backend, name, (2, 3), **kwargs)
    hd = head(backend)
    ctx = _context(backend, kwargs, 5)

    def model():
        with (pyro if backend == "pyro" else numpyro).plate("data", 5):
            return net.plated(None, hd, ctx)

    if backend == "pyro":
        trace = poutine.trace(model).get_trace()
        x, got = trace.nodes["_RETURN"]["value"], trace.log_prob_sum().item()
    else:
        seeded = numpyro.handlers.seed(model, jax.random.PRNGKey(0))
        trace = numpyro.handlers.trace(seeded).get_trace()
        sites = [s for s in trace.values() if s["type"] == "sample"]
        assert [s["name"] for s in sites] == [f"x_{p}" for p in range(6)]
        x = jnp.stack([s["value"] for s in sites], -1).reshape(5, 2, 3)
        got = float(sum(s["fn"].log_prob(s["value"]).sum() for s in sites))
    assert tuple(x.shape) == (5, 2, 3)
    assert abs(got - log_prob_of(net, hd, numpy(x), ctx).sum()) < 1e-8


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs", "levels", "head_kw"), NET_HEADS)
def test_every_tiny_image_sums_to_one(float64, backend, name, kwargs, levels, head_kw):
    """All ``levels^4`` 2x2 images: ``sum p(x) = 1`` (for each class)."""
    net, hd = _head_net(backend, name, (2, 2), kwargs, levels, head_kw)
    images = _images(levels, 0, (2, 2))
    images = np.array(list(itertools.product(range(levels), repeat=4)), images.dtype)
    images = images.reshape(-1, 2, 2)
    for c in range(3 if kwargs.get("num_classes") else 1):
        ctx = None
        if kwargs.get("num_classes"):
            ctx = array(backend, np.broadcast_to(np.eye(3)[c], (len(images), 3)))
        total = np.exp(log_prob_of(net, hd, images, ctx)).sum()
        assert abs(total - 1.0) < 1e-10


# -- parity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), NETS)
def test_parity_of_weights_outputs_and_samples(float64, name, kwargs):
    t, hd_t = _head_net("pyro", name, (5, 4), kwargs, 256, {"k": 256, "mixture": 2})
    j, hd_j = _head_net("numpyro", name, (5, 4), kwargs, 256, {"k": 256, "mixture": 2})
    wt, wj = t.get_weights(), j.get_weights()
    assert sorted(wt) == sorted(wj)
    for key in wt:  # the same seeded initial weights, in torch's layout on both sides
        np.testing.assert_array_equal(wt[key], wj[key], err_msg=key)
    # Other weights, set on both: the same outputs, log-likelihoods and draws.
    rng = np.random.default_rng(5)
    new = {key: rng.normal(0, 0.5, v.shape) for key, v in wt.items()}
    t.set_weights(new)
    j = j.set_weights(new)
    x = rng.integers(0, 256, (3, 5, 4))
    ctx_t, ctx_j = _context("pyro", kwargs, 3), _context("numpyro", kwargs, 3)
    out_t = numpy(t(array("pyro", x), ctx_t))
    out_j = numpy(j(array("numpyro", x), ctx_j))
    assert out_t.shape == (3, 5, 4, 6)
    np.testing.assert_allclose(out_t, out_j, atol=1e-5, rtol=0)
    np.testing.assert_allclose(
        log_prob_of(t, hd_t, x, ctx_t), log_prob_of(j, hd_j, x, ctx_j), atol=1e-5, rtol=0
    )
    u = noise((3, 5, 4), hd_t)
    np.testing.assert_array_equal(
        sample_with(t, hd_t, u, True, ctx_t), sample_with(j, hd_j, u, True, ctx_j)
    )


# -- sampling ----------------------------------------------------------------------------------


SAMPLERS = [
    ("PixelCNN", dict(channels=4, layers=1, kernel_size=3), 2),  # windows 3 x 5 of 8 x 7
    ("PixelCNN", dict(channels=4, layers=2, kernel_size=5), 4),  # window rows 5 of 8
    ("GatedPixelCNN", dict(channels=4, layers=2), 2),  # vertical window rows 4 of 8
    ("GatedPixelCNN", dict(channels=4, layers=2, num_classes=3), 4),
]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs", "levels"), SAMPLERS)
def test_cached_sampling_gives_the_naive_samples(float64, backend, name, kwargs, levels):
    head_kw = {} if levels == 2 else {"k": levels}
    net, hd = _head_net(backend, name, (8, 7), kwargs, levels, head_kw)
    u = noise((3, 8, 7), hd)
    ctx = _context(backend, kwargs, 3)
    naive = sample_with(net, hd, u, False, ctx)
    np.testing.assert_array_equal(sample_with(net, hd, u, True, ctx), naive)
    assert naive.shape == (3, 8, 7) and len(np.unique(naive)) > 1
    # Each pixel is the head's draw from the network's own conditional at that pixel.
    params = net(array(backend, naive), ctx)
    np.testing.assert_array_equal(numpy(hd.draw(params, array(backend, u))), naive)
    # Completion: the top rows are kept and the rest drawn given them, cached as naive.
    top = array(backend, (naive[:, :3] + 1) % levels)
    done = sample_with(net, hd, u, True, ctx, prefix=top)
    np.testing.assert_array_equal(done[:, :3], numpy(top))
    np.testing.assert_array_equal(done, sample_with(net, hd, u, False, ctx, prefix=top))
    drawn = numpy(hd.draw(net(array(backend, done), ctx), array(backend, u)))
    np.testing.assert_array_equal(drawn[:, 3:], done[:, 3:])


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_three_dimensional_events_and_batch_shapes(float64, backend):
    net, hd = make(backend, "GatedPixelCNN", (1, 3, 4), channels=4, layers=2), head(backend)
    u = array(backend, noise((2, 3, 1, 3, 4), hd))
    x = net.sample(u, hd)
    assert tuple(x.shape) == (2, 3, 1, 3, 4)
    assert tuple(net(x).shape) == (2, 3, 1, 3, 4, 1)
    np.testing.assert_allclose(numpy(net(x))[1, 2], numpy(net(x[1, 2])), atol=1e-12)
    assert net.order == tuple(range(12)) and net.event_shape == (1, 3, 4)
    top = array(backend, np.ones((2, 3, 1, 2, 4)))
    assert (numpy(net.sample(u, hd, prefix=top))[..., :2, :] == 1).all()


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_bad_input_is_a_one_line_error(backend):
    mod = MODULES[backend]
    for make_net, message in [
        (lambda: mod.PixelCNN((3, 28, 28)), "single grey channel"),
        (lambda: mod.PixelCNN((28,)), "image_shape"),
        (lambda: mod.PixelCNN((4, 4), kernel_size=4), "kernel_size"),
        (lambda: mod.PixelCNN((4, 4), channels=1), "channels"),
        (lambda: mod.GatedPixelCNN((4, 4), layers=0), "layers"),
        (lambda: mod.GatedPixelCNN((4, 4), num_classes=-1), "num_classes"),
        (lambda: mod.PixelCNN((4, 4), levels=1), "levels"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            make_net()
        assert "\n" not in str(err.value)
    net = mod.GatedPixelCNN((4, 4), channels=2, layers=1, num_classes=2)
    plain = mod.PixelCNN((4, 4), channels=2, layers=1, kernel_size=3)
    x, ctx = array(backend, np.zeros((2, 4, 4))), array(backend, np.eye(2))
    u = array(backend, noise((2, 4, 4), head(backend)))
    for call, kind, message in [
        (lambda: net(array(backend, np.zeros((2, 28, 28))), ctx), DataError, r"\(4, 4\)"),
        (lambda: net(x), ConfigError, "pass a context"),
        (lambda: net(x, array(backend, np.eye(3))), DataError, "context"),
        (lambda: plain(x, ctx), ConfigError, "unconditional"),
        (lambda: plain.sample(u[..., :3], head(backend)), DataError, "noise"),
        (lambda: plain.sample(u, head(backend, 3)), ConfigError, "parameters per pixel"),
        (
            lambda: plain.sample(u, head(backend), prefix=array(backend, np.zeros((2, 5, 4)))),
            DataError,
            "prefix",
        ),
        (
            lambda: plain.set_weights({"input.weight": np.zeros((2, 1, 3, 3))}),
            CheckpointError,
            "missing",
        ),
    ]:
        with pytest.raises(kind, match=message) as err:
            call()
        assert "\n" not in str(err.value)


# -- in ppgen's model-guide pair and trainer ---------------------------------------------------


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_density_is_exact_and_trains_with_the_ordinary_trainer(backend):
    """``AutoregressiveDensity(GatedPixelCNN)``: the trainer's bound on the empty guide is
    the exact log-likelihood, a few epochs lower the NLL of 4x4 stripes, and samples come
    back as rows."""
    m, inference = heads(backend), (pi if backend == "pyro" else ni)
    net = make(backend, "GatedPixelCNN", (4, 4), channels=8, layers=2)
    density = m.AutoregressiveDensity(net, m.Bernoulli())
    rng = np.random.default_rng(0)
    stripes = np.repeat(rng.random((64, 4, 1)) < 0.5, 4, axis=2)  # rows all 0 or all 1
    x = stripes.reshape(64, 16).astype(np.float32)
    trainer = inference.Trainer(density.model, density.guide, inference.ELBO(), lr=0.02,
                                batch_size=16)  # fmt: skip
    state = trainer.init(0, x)
    before = trainer.evaluate(state, x)["elbo"]
    np.testing.assert_allclose(before, log_prob_of(net, density.head, stripes.astype(float)).mean(),
                               rtol=1e-5)  # fmt: skip
    for epoch in range(4):
        state, _ = trainer.train_epoch(state, x, epoch)
    assert trainer.evaluate(state, x)["elbo"] > before + 1.0
    args = () if backend == "pyro" else (jax.random.PRNGKey(1),)
    assert tuple(density.sample(*args, 3).shape) == (3, 16)


def test_inputs_and_context_follow_the_weights_dtype():
    """A net cast to another float type reads its inputs in that type (no mixed dtypes)."""
    t = tpc.GatedPixelCNN((3, 3), channels=2, layers=1, num_classes=2).double()
    assert t(torch.zeros(2, 3, 3), torch.eye(2)).dtype == torch.float64
    j = jpc.GatedPixelCNN((3, 3), channels=2, layers=1, num_classes=2)
    j = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), j)
    assert j(jnp.zeros((2, 3, 3)), jnp.eye(2)).dtype == jnp.bfloat16
