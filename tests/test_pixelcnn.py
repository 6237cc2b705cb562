"""PixelCNN and Gated PixelCNN on both backends: the autoregressive property and the receptive
fields (the plain net's blind spot, none in the gated one) measured from exact Jacobians,
plated == efficient log-likelihood, normalisation over every tiny image, parity of weights,
outputs and samples, cached == naive sampling, completion, and one-line errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro.infer.util import log_density
from pyro import poutine

import ppgen.models.numpyro.pixelcnn as jpc
import ppgen.models.pyro.pixelcnn as tpc
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.models.conv_masks import horizontal_mask, pixelcnn_mask, window_starts

MODULES = {"pyro": tpc, "numpyro": jpc}


# -- heads (the protocol of issue 13's AR base: distribution, log_prob, draw) ---------------


class TorchBernoulli:
    num_params, noise_shape = 1, ()

    def distribution(self, params):
        return pdist.Bernoulli(logits=params[..., 0])

    def draw(self, params, noise):
        return (noise < torch.sigmoid(params[..., 0])).to(params.dtype)


class TorchCategorical:
    def __init__(self, k):
        self.num_params, self.noise_shape = k, (k,)

    def distribution(self, params):
        return pdist.Categorical(logits=params)

    def draw(self, params, noise):
        return torch.argmax(params + noise, -1)


class JaxBernoulli:
    num_params, noise_shape = 1, ()

    def distribution(self, params):
        return ndist.BernoulliLogits(params[..., 0])

    def draw(self, params, noise):
        return (noise < jax.nn.sigmoid(params[..., 0])).astype(params.dtype)


class JaxCategorical:
    def __init__(self, k):
        self.num_params, self.noise_shape = k, (k,)

    def distribution(self, params):
        return ndist.CategoricalLogits(params)

    def draw(self, params, noise):
        return jnp.argmax(params + noise, -1)


def head(backend, k=None):
    """Bernoulli (``k=None``) or ``Categorical(k)`` on ``backend``."""
    if backend == "pyro":
        return TorchBernoulli() if k is None else TorchCategorical(k)
    return JaxBernoulli() if k is None else JaxCategorical(k)


def noise(shape, k=None, seed=0):
    """Uniforms (Bernoulli) or Gumbels (``Categorical(k)``) in numpy."""
    rng = np.random.default_rng(seed)
    return rng.random(shape) if k is None else rng.gumbel(size=(*shape, k))


def array(backend, a):
    a = np.array(a)
    if backend == "pyro":
        return torch.as_tensor(a, dtype=torch.long if a.dtype.kind in "iu" else None)
    return jnp.asarray(a)


def numpy(a):
    return a.detach().numpy() if torch.is_tensor(a) else np.asarray(a)


def log_prob(backend, net, hd, x, context=None):
    """The efficient form: every conditional from one pass, summed over the image."""
    params = net(x, context)
    lp = hd.distribution(params).log_prob(x)
    return numpy(lp.sum((-1, -2)))


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
    assert not np.triu(dep).any()  # output p never moves with an input q >= p
    np.testing.assert_array_equal(dep, plain_field(6, 6, 2))
    # The blind spot: pixel (2, 1) never sees (1, 3), above and to the right, though it
    # comes earlier and lies within the field's reach; depth does not help.
    deep = make(backend, "PixelCNN", (6, 6), channels=8, layers=4, kernel_size=3)
    dep = field(backend, deep, x)
    assert not dep[2 * 6 + 1, 1 * 6 + 3] and not dep[3 * 6 + 0, 2 * 6 + 2]
    assert dep[2 * 6 + 1, 1 * 6 + 2] and not np.triu(dep).any()
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


def _context(kwargs, n):
    return np.eye(3)[np.arange(n) % 3] if kwargs.get("num_classes") else None


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs"), NETS)
@pytest.mark.parametrize("k", [None, 3])
def test_plated_form_scores_as_the_efficient_form(float64, backend, name, kwargs, k):
    net = make(backend, name, (3, 2), num_params=k or 1, levels=k, **kwargs)
    hd = head(backend, k)
    rng = np.random.default_rng(0)
    x = rng.integers(0, k or 2, (4, 3, 2))
    x = array(backend, x if k else x.astype(float))
    ctx = _context(kwargs, 4)
    ctx = None if ctx is None else array(backend, ctx)
    want = log_prob(backend, net, hd, x, ctx).sum()

    def model():
        with (pyro if backend == "pyro" else numpyro).plate("data", 4):
            return net.plated(x, hd, ctx)

    if backend == "pyro":
        trace = poutine.trace(model).get_trace()
        got = trace.log_prob_sum().item()
        names = [n for n, s in trace.nodes.items() if s["type"] == "sample" and n != "data"]
    else:
        got = float(log_density(model, (), {}, {})[0])
        names = [
            n for n, s in numpyro.handlers.trace(model).get_trace().items() if s["type"] == "sample"
        ]
    assert names == [f"x_{p}" for p in range(6)]
    assert abs(got - want) < 1e-5 * max(1.0, abs(want))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs"), NETS)
def test_plated_form_draws_when_x_is_none(float64, backend, name, kwargs):
    """Without x the plated form is a generative program; the efficient form scores its
    draws as the trace does."""
    net = make(backend, name, (2, 3), **kwargs)
    hd = head(backend)
    ctx = _context(kwargs, 5)
    ctx = None if ctx is None else array(backend, ctx)

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
    assert abs(got - log_prob(backend, net, hd, x, ctx).sum()) < 1e-8


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs"), NETS)
@pytest.mark.parametrize("k", [None, 3])
def test_probabilities_of_every_tiny_image_sum_to_one(float64, backend, name, kwargs, k):
    """All ``2^4`` binary (``3^4`` ternary) 2x2 images: ``sum p(x) = 1`` (per class)."""
    levels = k or 2
    net = make(backend, name, (2, 2), num_params=k or 1, levels=k, **kwargs)
    images = np.array(list(itertools.product(range(levels), repeat=4))).reshape(-1, 2, 2)
    x = array(backend, images if k else images.astype(float))
    for c in range(3 if kwargs.get("num_classes") else 1):
        ctx = None
        if kwargs.get("num_classes"):
            ctx = array(backend, np.broadcast_to(np.eye(3)[c], (len(images), 3)))
        total = np.exp(log_prob(backend, net, head(backend, k), x, ctx)).sum()
        assert abs(total - 1.0) < 1e-10


# -- parity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kwargs"), NETS)
def test_parity_of_weights_outputs_and_samples(float64, name, kwargs):
    t = make("pyro", name, (5, 4), num_params=3, **kwargs)
    j = make("numpyro", name, (5, 4), num_params=3, **kwargs)
    wt, wj = t.get_weights(), j.get_weights()
    assert sorted(wt) == sorted(wj)
    for key in wt:  # the same seeded initial weights, in torch's layout on both sides
        np.testing.assert_array_equal(wt[key], wj[key], err_msg=key)
    # Other weights, set on both: the same outputs and the same draws.
    rng = np.random.default_rng(5)
    new = {key: rng.normal(0, 0.5, v.shape) for key, v in wt.items()}
    t.set_weights(new)
    j = j.set_weights(new)
    x = rng.integers(0, 256, (3, 5, 4))
    ctx = _context(kwargs, 3)
    out_t = numpy(t(array("pyro", x), None if ctx is None else array("pyro", ctx)))
    out_j = numpy(j(array("numpyro", x), None if ctx is None else array("numpyro", ctx)))
    assert out_t.shape == (3, 5, 4, 3)
    np.testing.assert_allclose(out_t, out_j, atol=1e-5, rtol=0)
    u = noise((3, 5, 4), 3)
    s_t = t.sample(array("pyro", u), head("pyro", 3), None if ctx is None else array("pyro", ctx))
    s_j = j.sample(
        array("numpyro", u), head("numpyro", 3), None if ctx is None else array("numpyro", ctx)
    )
    np.testing.assert_array_equal(numpy(s_t), numpy(s_j))


# -- sampling ----------------------------------------------------------------------------------


SAMPLERS = [
    ("PixelCNN", dict(channels=4, layers=1, kernel_size=3), None),  # windows 3 x 5 of 8 x 7
    ("PixelCNN", dict(channels=4, layers=2, kernel_size=5), 4),  # window rows 5 of 8
    ("GatedPixelCNN", dict(channels=4, layers=2), None),  # vertical window rows 4 of 8
    ("GatedPixelCNN", dict(channels=4, layers=2, num_classes=3), 4),
]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
@pytest.mark.parametrize(("name", "kwargs", "k"), SAMPLERS)
def test_cached_sampling_gives_the_naive_samples(float64, backend, name, kwargs, k):
    net = make(backend, name, (8, 7), num_params=k or 1, levels=k, **kwargs)
    hd = head(backend, k)
    u = array(backend, noise((3, 8, 7), k))
    ctx = _context(kwargs, 3)
    ctx = None if ctx is None else array(backend, ctx)
    naive = numpy(net.sample(u, hd, ctx, cached=False))
    cached = numpy(net.sample(u, hd, ctx, cached=True))
    np.testing.assert_array_equal(cached, naive)
    assert naive.shape == (3, 8, 7) and len(np.unique(naive)) > 1
    # Each pixel is the head's draw from the network's own conditional at that pixel.
    params = net(array(backend, naive), ctx)
    np.testing.assert_array_equal(numpy(hd.draw(params, u)), naive)
    # Completion: the top rows are kept and the rest drawn given them, cached as naive.
    top = array(backend, np.asarray(naive)[:, :3] if k else 1.0 - np.asarray(naive)[:, :3])
    done = numpy(net.sample(u, hd, ctx, cached=True, prefix=top))
    np.testing.assert_array_equal(done[:, :3], numpy(top))
    np.testing.assert_array_equal(done, numpy(net.sample(u, hd, ctx, cached=False, prefix=top)))
    np.testing.assert_array_equal(
        numpy(hd.draw(net(array(backend, done), ctx), u))[:, 3:], done[:, 3:]
    )


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_three_dimensional_events_and_batch_shapes(float64, backend):
    net = make(backend, "GatedPixelCNN", (1, 3, 4), channels=4, layers=2)
    u = array(backend, noise((2, 3, 1, 3, 4)))
    x = net.sample(u, head(backend))
    assert tuple(x.shape) == (2, 3, 1, 3, 4)
    assert tuple(net(x).shape) == (2, 3, 1, 3, 4, 1)
    np.testing.assert_allclose(numpy(net(x))[1, 2], numpy(net(x[1, 2])), atol=1e-12)
    assert net.order == tuple(range(12)) and net.event_shape == (1, 3, 4)
    top = array(backend, np.ones((2, 3, 1, 2, 4)))
    assert (numpy(net.sample(u, head(backend), prefix=top))[..., :2, :] == 1).all()


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
    u = array(backend, noise((2, 4, 4)))
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
