"""MLP: shapes over batch shapes, the layer layout, activations, seeding without global RNG."""

import pytest
import torch

from ppgen.errors import ConfigError
from ppgen.models.pyro import MLP

ACTS = {"tanh": torch.tanh, "relu": torch.relu, "softplus": torch.nn.functional.softplus}
ACTS["elu"] = torch.nn.functional.elu


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 5)])
@pytest.mark.parametrize("activation", sorted(ACTS))
def test_forward_is_affine_act_affine(batch_shape, activation):
    net = MLP([4, 6, 3], activation, seed=1)
    assert isinstance(net.layers, torch.nn.ModuleList) and len(net.layers) == 2
    assert net.layers[0].weight.shape == (6, 4)  # torch layout (out, in)
    x = torch.randn(*batch_shape, 4)
    l0, l1 = net.layers
    expected = l1(ACTS[activation](l0(x)))  # no activation after the last layer
    out = net(x)
    assert out.shape == (*batch_shape, 3)
    # Same ops in the same order: equal up to float32 rounding.
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = MLP([5, 7, 2], seed=3), MLP([5, 7, 2], seed=3), MLP([5, 7, 2], seed=4)
    assert torch.equal(torch.get_rng_state(), before)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert not torch.equal(pa, pc)
    # torch.nn.Linear's default range: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    assert a.layers[0].weight.abs().max() <= 5**-0.5


def test_dtype_follows_default(float64):
    assert MLP([2, 3], seed=0).layers[0].weight.dtype == torch.float64


@pytest.mark.parametrize(
    "sizes, activation", [([3], "tanh"), ([3, 0, 2], "tanh"), ([3, 2], "sigmoid")]
)
def test_bad_config(sizes, activation):
    with pytest.raises(ConfigError):
        MLP(sizes, activation)


@pytest.mark.parametrize("hidden", [(), (5,), (5, 4)])
def test_call_concat_equals_the_concatenated_call(float64, hidden):
    """``call_concat(a, b)`` is ``net(cat([a, b]))`` with a and b broadcast (M2's
    ``[x, onehot(y)]`` for every class at once)."""
    net = MLP([6 + 3, *hidden, 2], "softplus", seed=1)
    a = torch.randn(4, 6)  # (batch, 6)
    b = torch.randn(3, 1, 3)  # (classes, 1, 3)
    full = net(torch.cat([a.expand(3, 4, 6), b.expand(3, 4, 3)], dim=-1))
    torch.testing.assert_close(net.call_concat(a, b), full, rtol=1e-12, atol=1e-12)
