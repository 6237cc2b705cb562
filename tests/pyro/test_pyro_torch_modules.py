"""What only the Pyro backend has: models are torch modules with module-local parameters
(never the global param store), built without touching torch's global RNG, and their
draws carry no autograd graph."""

import pyro
import pytest
import torch
from pyro import poutine

from ppgen.inference.pyro.handlers import ParamSubstituteMessenger
from ppgen.models.pyro import MLP, VAE

X_DIM = 12
ACTS = {"tanh": torch.tanh, "relu": torch.relu, "softplus": torch.nn.functional.softplus}
ACTS["elu"] = torch.nn.functional.elu


def make(seed=0):
    return VAE(X_DIM, latent=3, hidden=(8, 6), seed=seed)


def data(n):
    return (torch.rand(n, X_DIM, generator=torch.Generator().manual_seed(0)) < 0.4).float()


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 5)])
@pytest.mark.parametrize("activation", sorted(ACTS))
def test_mlp_is_its_torch_layers_composed(batch_shape, activation):
    net = MLP([4, 6, 3], activation, seed=1)
    assert isinstance(net.layers, torch.nn.ModuleList) and len(net.layers) == 2
    x = torch.randn(*batch_shape, 4)
    l0, l1 = net.layers
    expected = l1(ACTS[activation](l0(x)))  # no activation after the last layer
    # Same ops in the same order: equal up to float32 rounding.
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-6)


def test_building_networks_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    MLP([5, 7, 2], seed=3), make(seed=4)
    assert torch.equal(torch.get_rng_state(), before)


def test_draws_carry_no_graph():
    m, x = make(), data(3)
    assert not m.reconstruct(x).requires_grad
    assert not m.sample(2).requires_grad


def test_bind_accepts_param_site_names_and_returns_the_model():
    a, b = make(seed=1), make(seed=2)
    params = {
        k.replace("encoder.", "encoder$$$", 1).replace("decoder.", "decoder$$$", 1): v
        for k, v in a.get_weights().items()
    }
    assert b.bind({k: torch.from_numpy(v) for k, v in params.items()}) is b
    x = data(3)
    assert torch.equal(a.decode(a.encode(x)[0]), b.decode(b.encode(x)[0]))


def test_two_instances_keep_their_own_parameters():
    pyro.clear_param_store()
    a, b = make(seed=0), make(seed=0)
    x = data(3)
    with poutine.trace(param_only=True) as ta:
        a.model(x), a.guide(x)
    with poutine.trace(param_only=True) as tb:
        b.model(x), b.guide(x)
    assert list(ta.trace.nodes) == list(tb.trace.nodes)  # same site names ...
    own_a = {id(p) for p in a.parameters()}
    own_b = {id(p) for p in b.parameters()}
    assert {id(s["value"]) for s in ta.trace.nodes.values()} == own_a  # ... own tensors
    assert {id(s["value"]) for s in tb.trace.nodes.values()} == own_b
    assert len(pyro.get_param_store()) == 0  # the global store is never touched


def test_substituted_params_are_used():
    m, x = make(), data(2)
    zero = {f"decoder$$${k}": torch.zeros_like(v) for k, v in m.decoder.named_parameters()}
    trace = poutine.trace(ParamSubstituteMessenger(zero)(m.model)).get_trace(x)
    # A zero decoder emits logits 0 everywhere, whatever z was.
    assert torch.equal(trace.nodes["x"]["fn"].base_dist.logits, torch.zeros(2, X_DIM))
