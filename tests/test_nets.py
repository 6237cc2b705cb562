"""MLP on both backends: the forward pass over batch shapes and activations, the torch layer
layout, seeded initialisation, dtype, configuration errors and the concatenation-free call."""

import numpy as np
import pytest

from ppgen.errors import ConfigError

ACTS = {
    "tanh": np.tanh,
    "relu": lambda a: np.maximum(a, 0),
    "softplus": lambda a: np.log1p(np.exp(a)),
    "elu": lambda a: np.where(a > 0, a, np.expm1(a)),
}


def weights(backend, net):
    """The network's weights as numpy, under torch's names (``layers.0.weight``)."""
    return {k: backend.numpy(v) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("activation", sorted(ACTS))
@pytest.mark.parametrize("lead", [(), (3,), (2, 5)])
def test_mlp_matches_a_numpy_forward_pass(backend, activation, lead):
    net = backend.models.MLP([4, 6, 3], activation, seed=1)
    x = np.random.default_rng(0).normal(size=(*lead, 4)).astype(np.float32)
    w = weights(backend, net)
    assert w["layers.0.weight"].shape == (6, 4)  # torch layout (out, in)
    h = ACTS[activation](x @ w["layers.0.weight"].T + w["layers.0.bias"])
    expected = h @ w["layers.1.weight"].T + w["layers.1.bias"]  # no activation after the last
    out = backend.numpy(net(backend.array(x)))
    assert out.shape == (*lead, 3)
    # float32 on both sides, the same ops in another order: rounding only.
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_seeded_init_is_reproducible_in_torchs_default_range(backend):
    a, b, c = (backend.models.MLP([5, 7, 2], seed=s) for s in (3, 3, 4))
    wa, wb, wc = (weights(backend, net) for net in (a, b, c))
    for k, v in wa.items():
        np.testing.assert_array_equal(v, wb[k])
        assert not np.array_equal(v, wc[k])
    # torch.nn.Linear's default range: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert np.abs(wa["layers.0.weight"]).max() <= 5**-0.5
    assert np.abs(wa["layers.1.bias"]).max() <= 7**-0.5


def test_dtype_follows_the_backends_default(backend, float64):
    assert weights(backend, backend.models.MLP([2, 3], seed=0))["layers.0.weight"].dtype == (
        np.float64
    )


@pytest.mark.parametrize(
    "sizes, activation, match",
    [([3], "tanh", "sizes"), ([3, 0, 2], "tanh", "sizes"), ([3, 2], "sigmoidish", "activation")],
)
def test_bad_config(backend, sizes, activation, match):
    with pytest.raises(ConfigError, match=match):
        backend.models.MLP(sizes, activation)


@pytest.mark.parametrize("hidden", [(), (5,), (5, 4)])
def test_call_concat_equals_the_concatenated_call(backend, float64, hidden):
    """``call_concat(a, b)`` is ``net(concat([a, b]))`` with a and b broadcast (M2's
    ``[x, onehot(y)]`` for every class at once)."""
    net = backend.models.MLP([6 + 3, *hidden, 2], "softplus", seed=1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(3, 1, 3))  # (batch, 6), (classes, 1, 3)
    full = np.concatenate([np.broadcast_to(a, (3, 4, 6)), np.broadcast_to(b, (3, 4, 3))], -1)
    np.testing.assert_allclose(
        backend.numpy(net.call_concat(backend.array(a), backend.array(b))),
        backend.numpy(net(backend.array(full))),
        rtol=1e-12,
        atol=1e-12,
    )
