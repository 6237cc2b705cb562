"""VAE and HierarchicalVAE: sites, shapes, weights in numpy, module-local params, input checks."""

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.inference.pyro.handlers import ParamSubstituteMessenger
from ppgen.models.pyro import VAE, HierarchicalVAE

X_DIM = 12


def make(kind, **kwargs):
    if kind == "vae":
        return VAE(X_DIM, latent=3, hidden=(8, 6), **kwargs)
    if kind == "vae-gaussian":
        return VAE(X_DIM, latent=3, hidden=(8,), likelihood="gaussian", **kwargs)
    return HierarchicalVAE(X_DIM, latents=(4, 2), hidden=((8,), (5,)), **kwargs)


KINDS = ["vae", "vae-gaussian", "hvae"]


def data(kind, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "vae-gaussian":
        return torch.randn(n, X_DIM, generator=g)
    return (torch.rand(n, X_DIM, generator=g) < 0.4).float()


def mean_image(m, x):
    """Deterministic: E[x | z] at the posterior mean (reconstruct draws z)."""
    return m.decode(m.encode(x)[0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [1, 7])
def test_user_methods_shapes(kind, batch):
    m, x = make(kind), data(kind, batch)
    loc, scale = m.encode(x)
    d = 3 if kind != "hvae" else 4
    assert loc.shape == scale.shape == (batch, d)
    assert (scale >= 1e-4).all()  # softplus(.) + 1e-4
    assert m.decode(loc).shape == (batch, X_DIM)
    torch.manual_seed(0)
    recon = m.reconstruct(x)
    assert recon.shape == (batch, X_DIM) and not recon.requires_grad
    torch.manual_seed(0)
    assert torch.equal(m.reconstruct(x), recon)  # draws from torch's global generator
    samples = m.sample(5)
    assert samples.shape == (5, X_DIM)
    if kind != "vae-gaussian":  # Bernoulli means are probabilities
        assert ((samples > 0) & (samples < 1)).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch, num_data", [(1, None), (5, None), (5, 40)])
def test_sites_and_per_dataset_scale(kind, batch, num_data):
    m, x = make(kind), data(kind, batch)
    guide = poutine.trace(m.guide).get_trace(x, num_data=num_data)
    model = poutine.trace(poutine.replay(m.model, trace=guide)).get_trace(x, num_data=num_data)
    latents = ["z"] if kind != "hvae" else ["z1", "z2"]
    for name in latents + ["x"]:
        site = model.nodes[name]
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
        assert site["scale"] == (num_data or batch) / batch
        assert site["is_observed"] == (name == "x")
        assert site["fn"].batch_shape == (batch,)
    assert sorted(n for n in guide.nodes if n in latents) == latents
    assert torch.equal(model.nodes["x"]["value"], x)


@pytest.mark.parametrize("kind", KINDS)
def test_weight_keys_and_round_trip(kind):
    a, b = make(kind, seed=1), make(kind, seed=2)
    weights = a.get_weights()
    nets = ["encoder", "decoder"] if kind != "hvae" else ["encoder1", "encoder2", "decoder2"]
    nets += ["decoder1"] if kind == "hvae" else []
    expected = {f"{n}.layers.{i}.{p}" for n in nets for i in range(2) for p in ("weight", "bias")}
    if kind == "vae":
        expected |= {f"{n}.layers.2.{p}" for n in nets for p in ("weight", "bias")}
    if kind == "vae-gaussian":
        expected.add("decoder_scale_raw")
    assert set(weights) == expected
    assert all(isinstance(v, np.ndarray) for v in weights.values())
    first = weights["decoder1.layers.0.weight" if kind == "hvae" else "decoder.layers.0.weight"]
    assert first.shape == ((8, 4) if kind == "hvae" else (8, 3))  # torch layout: (out, in)
    x = data(kind, 4)
    assert not torch.equal(mean_image(a, x), mean_image(b, x))
    b.set_weights(weights)
    assert torch.equal(mean_image(a, x), mean_image(b, x))
    assert all(np.array_equal(v, b.get_weights()[k]) for k, v in weights.items())
    weights[next(iter(weights))] = weights[next(iter(weights))][:1]
    with pytest.raises(CheckpointError):
        b.set_weights(weights)
    with pytest.raises(CheckpointError):
        b.set_weights({"nonsense": np.zeros(2)})


def test_bind_accepts_param_site_names():
    a, b = make("vae", seed=1), make("vae", seed=2)
    params = {
        k.replace("encoder.", "encoder$$$", 1).replace("decoder.", "decoder$$$", 1): v
        for k, v in a.get_weights().items()
    }
    assert b.bind({k: torch.from_numpy(v) for k, v in params.items()}) is b
    x = data("vae", 3)
    assert torch.equal(mean_image(a, x), mean_image(b, x))


def test_two_instances_keep_their_own_parameters():
    pyro.clear_param_store()
    a, b = make("vae", seed=0), make("vae", seed=0)
    x = data("vae", 3)
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
    m, x = make("vae"), data("vae", 2)
    zero = {f"decoder$$${k}": torch.zeros_like(v) for k, v in m.decoder.named_parameters()}
    trace = poutine.trace(ParamSubstituteMessenger(zero)(m.model)).get_trace(x)
    # A zero decoder emits logits 0 everywhere, whatever z was.
    assert torch.equal(trace.nodes["x"]["fn"].base_dist.logits, torch.zeros(2, X_DIM))


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_a_data_error(kind):
    m = make(kind)
    bad = {
        "features": torch.zeros(3, X_DIM + 1),
        "rank": torch.zeros(X_DIM),
        "nan": torch.full((2, X_DIM), float("nan")),
        "numpy": np.zeros((2, X_DIM)),
    }
    if kind != "vae-gaussian":
        bad["not binary"] = torch.full((2, X_DIM), 0.5)
    for name, x in bad.items():
        # encode reads grey levels (features of grey images, as M1 uses): only densities
        # need binary data.
        fns = (m.model, m.guide) if name == "not binary" else (m.model, m.guide, m.encode)
        for fn in fns:
            with pytest.raises(DataError):
                fn(x)
            if name == "features":
                with pytest.raises(DataError, match=f"\\(batch, {X_DIM}\\)"):
                    fn(x)


@pytest.mark.parametrize(
    "kwargs", [dict(likelihood="poisson"), dict(likelihood="gaussian", scale=-1.0), dict(x_dim=0)]
)
def test_bad_config(kwargs):
    with pytest.raises(ConfigError):
        VAE(**{"x_dim": X_DIM, **kwargs})


def test_fixed_gaussian_scale_has_no_parameter():
    m = VAE(X_DIM, latent=2, hidden=(4,), likelihood="gaussian", scale=0.3)
    assert "decoder_scale_raw" not in m.get_weights()
    trace = poutine.trace(m.model).get_trace(torch.zeros(2, X_DIM))
    assert torch.allclose(trace.nodes["x"]["fn"].base_dist.scale, torch.tensor(0.3))


def test_num_data_smaller_than_batch():
    m = make("vae")
    with pytest.raises(ConfigError):
        m.model(data("vae", 4), num_data=2)
