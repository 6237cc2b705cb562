"""SSVAE (M2) and its semi-supervised objective and trainer on the Pyro backend: the enumerated
bound is the hand-written sum over classes, it lies below log p(x), gradients reach every
network, alpha, labels and user networks behave, and training learns and resumes exactly."""

import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import nn

from ppgen.data import LabelledBatches
from ppgen.errors import ConfigError, DataError
from ppgen.inference.pyro import (
    ClassifierEvaluator,
    DynamicBinarization,
    InputNoise,
    SemiSupervisedELBO,
    Trainer,
    label_distribution,
    log_weights,
)
from ppgen.models.pyro import SSVAE

X_DIM, C, LATENT = 6, 3, 2


class FixLatent(Messenger):
    """Give the guide's sample site ``name`` whichever of ``values`` fits its batch shape
    (``(batch,)`` labelled, ``(C, batch)`` enumerated, also with size-1 dims between, as a
    particle plate of one adds), reshaped to it; a run whose shape none fits (a probe of
    the plate structure) draws as usual. The site stays latent, so it is replayed into the
    model and ``log q`` is counted at it (``poutine.condition`` would make it observed)."""

    def __init__(self, name, *values):
        super().__init__()
        self.name, self.values = name, values

    def _pyro_sample(self, msg):
        if msg["name"] == self.name and not msg["is_observed"]:
            shape = msg["fn"].batch_shape
            squeezed = [n for n in shape if n != 1]
            fits = [v for v in self.values if [n for n in v.shape[:-1] if n != 1] == squeezed]
            if fits:
                msg["value"] = fits[0].reshape(*shape, fits[0].shape[-1])
                msg["done"] = True


def make(**kwargs):
    return SSVAE(X_DIM, num_classes=C, latent=LATENT, hidden=(8,), seed=3, **kwargs)


def binary(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, X_DIM, generator=g) < 0.4).to(torch.get_default_dtype())


def per_class_elbo(m, x, z):
    """``L(x_b, c)`` at the fixed draws ``z[c]`` with ``y = c`` observed, shape ``(C, batch)``."""
    rows = []
    for c in range(C):
        y = torch.full((len(x),), c, dtype=torch.long)
        guide = FixLatent("z", z[c])(m.guide)
        rows.append(log_weights(m.model, guide, x, y, num_particles=1)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("batch", [1, 4])
def test_enumerated_bound_is_the_sum_over_classes(float64, batch):
    """(a) ``U(x) = sum_c q(c|x) (L(x,c) - log q(c|x))`` with the same z per (class, row); and
    (b) per row ``log sum_c exp L(x,c) - U(x) = KL(q(y|x) || softmax_c L(x,c)) >= 0``."""
    m, x = make().double(), binary(batch)
    z = torch.randn(C, batch, LATENT, generator=torch.Generator().manual_seed(1))
    objective = SemiSupervisedELBO()
    bound = objective.unlabelled_bound(m.model, FixLatent("z", z)(m.guide), x)

    elbo = per_class_elbo(m, x, z)  # (C, batch)
    log_q = torch.log_softmax(m.classifier(x), dim=-1).T  # (C, batch)
    by_hand = (log_q.exp() * (elbo - log_q)).sum()
    # float64, same arithmetic in another order: agreement to rounding.
    torch.testing.assert_close(bound, by_hand, rtol=1e-12, atol=1e-10)

    for b in range(batch):  # one row at a time: U(x_b) <= log sum_c exp L(x_b, c)
        u = objective.unlabelled_bound(
            m.model, FixLatent("z", z[:, b : b + 1])(m.guide), x[b : b + 1]
        )
        lse = torch.logsumexp(elbo[:, b], dim=0)
        kl = (log_q[:, b].exp() * (log_q[:, b] - torch.log_softmax(elbo[:, b], 0))).sum()
        assert u <= lse
        torch.testing.assert_close(lse - u, kl, rtol=1e-10, atol=1e-10)


def test_unlabelled_bound_is_below_the_exact_log_likelihood(float64):
    """(b) ``E_z[U(x)] <= log p(x) = log sum_c p(c) int p(z) p(x|z,c) dz``, the integral by
    Gauss-Hermite quadrature on a one-dimensional latent."""
    m = SSVAE(4, num_classes=2, latent=1, hidden=(6,), seed=5).double()
    x = (torch.rand(3, 4, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)  # int f(z) N(z; 0, 1) dz
    z = torch.from_numpy(nodes)[:, None]  # (Q, 1)
    log_w = torch.from_numpy(np.log(weights / math.sqrt(2 * math.pi)))  # (Q,)
    log_px = []
    for c in range(2):
        y_hot = nn.functional.one_hot(torch.tensor(c), 2).double().expand(len(z), 2)
        logits = m.decoder(torch.cat([z, y_hot], dim=-1))[:, None, :]  # (Q, 1, 4)
        log_lik = dist.Bernoulli(logits=logits).log_prob(x).sum(-1)  # (Q, batch)
        log_px.append(math.log(0.5) + torch.logsumexp(log_w[:, None] + log_lik, dim=0))
    log_px = torch.logsumexp(torch.stack(log_px), dim=0).sum()

    with torch.random.fork_rng():
        torch.manual_seed(0)
        bound = SemiSupervisedELBO(num_particles=50).unlabelled_bound(m.model, m.guide, x)
    # The gap log p(x) - E[U] is about 1.2 nats here (3 rows, untrained networks); the
    # estimate's standard deviation with 50 particles is about 0.1.
    assert log_px - 2.0 < bound < log_px


def _grads(loss, m):
    grads = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
    return {
        name: (g is not None and bool(g.abs().sum() > 0))
        for (name, _), g in zip(m.named_parameters(), grads, strict=True)
    }


def test_gradients_reach_every_network_and_alpha_zero_cuts_the_classification_term():
    """(c) The full loss moves classifier, encoder and decoder; ``alpha = 0`` leaves the
    classifier only the unlabelled bound's gradient (the labelled ELBO never runs it)."""
    m = make()
    x_l, y_l, x_u = binary(4, 1), torch.tensor([0, 1, 2, 1]), binary(5, 2)
    full = _grads(SemiSupervisedELBO()(m.model, m.guide, x_l, y_l, x_u), m)
    assert all(full.values()), [k for k, v in full.items() if not v]

    parts = SemiSupervisedELBO(alpha=0.0).parts(m.model, m.guide, x_l, y_l, x_u)
    assert parts["classification"].item() == 0.0
    labelled = _grads(-(parts["labelled"] + parts["classification"]), m)
    assert not any(v for k, v in labelled.items() if k.startswith("classifier."))
    assert all(v for k, v in labelled.items() if not k.startswith("classifier."))
    unlabelled = _grads(-parts["unlabelled"], m)
    assert all(unlabelled.values())

    with_alpha = SemiSupervisedELBO(alpha=1.0).parts(m.model, m.guide, x_l, y_l, x_u)
    classification = _grads(-with_alpha["classification"], m)
    assert {k for k, v in classification.items() if v} == {
        k for k in classification if k.startswith("classifier.")
    }


def test_default_alpha_and_the_per_dataset_scales(float64):
    """(d) ``alpha = 0.1 (N_l + N_u) / N_l``; each part is its minibatch sum times
    ``set size / batch size``."""
    assert SemiSupervisedELBO().alpha_for(100, 49_900) == pytest.approx(0.1 * 50_000 / 100)
    assert SemiSupervisedELBO(alpha=0.5).alpha_for(100, 49_900) == 0.5
    with pytest.raises(ConfigError):
        SemiSupervisedELBO(alpha=-1.0)
    with pytest.raises(ConfigError):
        SemiSupervisedELBO(num_particles=0)

    m = make().double()
    x_l, y_l, x_u = binary(4, 1), torch.tensor([0, 1, 2, 1]), binary(5, 2)
    z_l = torch.randn(4, LATENT, generator=torch.Generator().manual_seed(3))
    z_u = torch.randn(C, 5, LATENT, generator=torch.Generator().manual_seed(4))
    objective = SemiSupervisedELBO()

    def parts(**sizes):
        guide = FixLatent("z", z_l, z_u)(m.guide)
        return objective.parts(m.model, guide, x_l, y_l, x_u, **sizes)

    small, large = parts(), parts(num_labelled=40, num_unlabelled=500)
    torch.testing.assert_close(large["labelled"], 10 * small["labelled"])
    torch.testing.assert_close(large["unlabelled"], 100 * small["unlabelled"])
    log_q = torch.log_softmax(m.classifier(x_l), -1)[torch.arange(4), y_l].sum()
    torch.testing.assert_close(small["classification"], 0.1 * (4 + 5) / 4 * log_q)
    torch.testing.assert_close(large["classification"], 0.1 * 540 / 40 * 10 * log_q)
    loss = objective(m.model, FixLatent("z", z_l, z_u)(m.guide), x_l, y_l, x_u)
    torch.testing.assert_close(loss, -sum(small.values()))


def test_label_distribution_stops_at_the_site():
    m = make()
    x = binary(5)
    q = label_distribution(m.guide, x)
    torch.testing.assert_close(q.probs, m.classify(x))

    def guide(x, y=None):
        with pyro.plate("data", len(x)):
            q = pyro.sample("y", dist.Categorical(logits=torch.zeros(len(x), 4)))
            raise AssertionError(f"nothing after the label site may run, got {q}")

    assert label_distribution(guide, x).batch_shape == (5,)
    with pytest.raises(ConfigError, match="no sample site 'label'"):
        label_distribution(m.guide, x, site="label")


@pytest.mark.parametrize(
    "y, match",
    [
        (torch.tensor([0.0, 1.0, 2.0, 1.0]), "dtype"),
        (torch.tensor([0, 1, 2]), "shape"),
        (torch.tensor([0, 1, 3, 1]), "0..2"),
        (torch.tensor([0, -1, 2, 1]), "0..2"),
        (np.array([0, 1, 2, 1]), "torch.Tensor"),
    ],
    ids=["float", "length", "too-large", "negative", "numpy"],
)
def test_bad_labels_are_data_errors(y, match):
    """(e) Float, wrongly sized and out-of-range labels, in model, guide and objective."""
    m, x = make(), binary(4)
    for fn in (m.model, m.guide):
        with pytest.raises(DataError, match=match):
            fn(x, y)
    with pytest.raises(DataError, match=match):
        SemiSupervisedELBO()(m.model, m.guide, x, y, binary(5))
    with pytest.raises(DataError, match=match):
        m.check_y(y, 4)


def test_user_methods():
    m, x = make(), binary(5)
    assert m.classify(x).shape == (5, C)
    torch.testing.assert_close(m.classify(x).sum(-1), torch.ones(5))
    assert m.predict(x).shape == (5,) and m.predict(x).dtype == torch.long
    loc, scale = m.encode(x, m.predict(x))
    assert loc.shape == scale.shape == (5, LATENT) and (scale >= 1e-4).all()
    assert m.decode(loc, 2).shape == (5, X_DIM)
    assert m.sample(4).shape == m.sample(4, y=1).shape == (4, X_DIM)
    assert m.sample(3, y=[0, 1, 2]).shape == (3, X_DIM)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        recon = m.reconstruct(x)
        torch.manual_seed(0)
        assert torch.equal(m.reconstruct(x), recon) and not recon.requires_grad
    out = m.analogies(x, [0, 2])
    assert out.shape == (5, 2, X_DIM)
    torch.testing.assert_close(out[:, 1], m.decode(m.encode(x, m.predict(x))[0], 2))
    grey = torch.full((2, X_DIM), 0.5)  # grey levels: the Bernoulli cross-entropy scores them
    assert m.predict(grey).shape == (2,) and m.encode(grey, 0)[0].shape == (2, LATENT)
    trace = poutine.trace(m.model).get_trace(grey)
    assert torch.isfinite(trace.log_prob_sum())
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        m.model(torch.full((2, X_DIM), 1.5))
    with pytest.raises(DataError, match="NaN"):
        m.classify(torch.full((2, X_DIM), math.nan))
    with pytest.raises(DataError, match="shape"):
        m.predict(binary(2)[:, :-1])
    with pytest.raises(DataError):
        m.sample(2, y=[0.5, 1.0])
    with pytest.raises(DataError):
        m.analogies(x, [0, C])
    assert set(m.get_weights()) == {
        f"{net}.layers.{i}.{p}"
        for net in ("classifier", "encoder", "decoder")
        for i in (0, 1)
        for p in ("weight", "bias")
    }
    assert "decoder_scale_raw" in make(likelihood="gaussian").get_weights()


def test_user_networks():
    """(f) A user's ``nn.Module`` works (also under enumeration); a misfit is a ConfigError."""
    encoder = nn.Sequential(nn.Linear(X_DIM + C, 16), nn.Tanh(), nn.Linear(16, 2 * LATENT))
    m = make(encoder=encoder)
    assert m.encoder is encoder and "encoder.2.weight" in m.get_weights()
    x_l, y_l, x_u = binary(4, 1), torch.tensor([0, 1, 2, 1]), binary(5, 2)
    loss = SemiSupervisedELBO()(m.model, m.guide, x_l, y_l, x_u)
    assert torch.isfinite(loss)
    grads = torch.autograd.grad(loss, list(encoder.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)

    with pytest.raises(ConfigError, match="encoder must map"):
        make(encoder=nn.Linear(X_DIM + C, LATENT))  # loc only, no scale
    with pytest.raises(ConfigError, match="classifier must map"):
        make(classifier=nn.Linear(X_DIM, C + 1))
    with pytest.raises(ConfigError, match="decoder must map"):
        make(decoder=nn.Linear(LATENT, X_DIM))  # forgets the one-hot label
    with pytest.raises(ConfigError, match="nn.Module"):
        make(decoder=lambda h: h)
    with pytest.raises(ConfigError, match="num_classes"):
        SSVAE(X_DIM, num_classes=1)


# -- training ------------------------------------------------------------------------------


def two_classes(n=96, n_labelled=8, seed=0):
    """Two well-separated noisy prototypes; ``n_labelled`` balanced labels, the rest -1."""
    rng = np.random.default_rng(seed)
    protos = np.zeros((2, 8), dtype=bool)
    protos[0, :4] = protos[1, 4:] = True
    y = rng.integers(0, 2, n)
    x = (protos[y] ^ (rng.random((n, 8)) < 0.1)).astype(np.float32)
    partial = np.full(n, -1)
    for c in (0, 1):
        keep = np.flatnonzero(y == c)[: n_labelled // 2]
        partial[keep] = c
    return x, y, partial


def semi_supervised_trainer(
    m, objective=None, *, num_classes, labelled_batch_size=None, lr=3e-4, **kwargs
):
    """The trainer configured for partially labelled data: the labelled/unlabelled
    schedule and the classification error as its evaluation."""
    return Trainer(
        m.model,
        m.guide,
        objective or SemiSupervisedELBO(),
        lr=lr,
        schedule=LabelledBatches(num_classes, labelled_batch_size),
        evaluator=ClassifierEvaluator(),
        **kwargs,
    )


def setup_trainer(**kwargs):
    m = SSVAE(8, num_classes=2, latent=2, hidden=(8,), seed=1)
    kwargs = {"num_classes": 2, "lr": 3e-2, "batch_size": 16, "labelled_batch_size": 4, **kwargs}
    return m, semi_supervised_trainer(m, **kwargs)


def test_training_lowers_the_error_and_resumes_bit_exactly():
    """(g) A few epochs on two separable classes learn them; a checkpoint resumes to exactly
    the state (and metrics) of the uninterrupted run, binarization noise included."""
    x, y, partial = two_classes()
    x = np.where(x > 0, 0.9, 0.1).astype(np.float32)  # grey levels: binarized every epoch
    # A strong classification weight learns this toy within three epochs for every seed.
    kwargs = {"objective": SemiSupervisedELBO(alpha=10.0), "transform": DynamicBinarization()}
    m, trainer = setup_trainer(**kwargs)
    state = trainer.init(7, (x, partial))
    assert {id(p) for p in state.params.values()} == {id(p) for p in m.parameters()}
    first = trainer.evaluate(state, (x, y))["error"]
    for epoch in range(3):
        state, metrics = trainer.train_epoch(state, (x, partial), epoch)
        assert metrics["finite"] == 1.0 and math.isfinite(metrics["loss"])
    assert state.step == 3 * (88 // 16) and state.epoch == 3
    error = trainer.evaluate(state, (x, y))
    assert error["error"] == error["loss"] < first and error["error"] <= 0.1
    predicted = ClassifierEvaluator().predict(trainer, state, x)
    np.testing.assert_array_equal(predicted, m.predict(torch.from_numpy(x)))

    arrays, meta = trainer.state_arrays(state)
    meta = json.loads(json.dumps(meta))  # what a checkpoint file holds
    state, uninterrupted = trainer.train_epoch(state, (x, partial), 3)

    fresh, fresh_trainer = setup_trainer(**kwargs)  # a new process, in effect
    resumed = fresh_trainer.init(123, (x, partial))  # the checkpoint's seed wins
    resumed = fresh_trainer.load_state_arrays(resumed, arrays, meta)
    resumed, metrics = fresh_trainer.train_epoch(resumed, (x, partial), 3)
    assert metrics == uninterrupted
    assert resumed.step == state.step and resumed.epoch == state.epoch == 4
    for k, v in m.get_weights().items():
        np.testing.assert_array_equal(fresh.get_weights()[k], v, err_msg=k)


def test_trainer_step_and_input_errors():
    x, y, partial = two_classes()
    m, trainer = setup_trainer()
    state = trainer.init(0, x)  # x alone is enough to find the parameters
    state, metrics = trainer.step(state, (x[:4], np.array([0, 1, 0, 1]), x[4:20]))
    assert state.step == 1 and math.isfinite(metrics["loss"])
    with pytest.raises(DataError, match="missing"):
        trainer.step(state, (x[:4], np.array([0, -1, 0, 1]), x[4:20]))
    with pytest.raises(DataError, match="dtype"):
        trainer.train_epoch(state, (x, partial.astype(float)), 0)
    with pytest.raises(DataError, match="labels but the data"):
        trainer.train_epoch(state, (x, partial[:-1]), 0)
    with pytest.raises(DataError, match="outside"):
        trainer.train_epoch(state, (x, np.where(partial == 1, 2, partial)), 0)
    with pytest.raises(DataError, match="y = -1"):
        trainer.train_epoch(state, x, 0)
    one_label = np.full(len(x), -1)
    one_label[0] = 0
    with pytest.raises(ConfigError, match="fewer than the 2 classes"):
        trainer.train_epoch(state, (x, one_label), 0)
    with pytest.raises(DataError, match="no -1"):
        trainer.evaluate(state, (x, partial))
    with pytest.raises(ConfigError):
        setup_trainer(labelled_batch_size=-1)
    with pytest.raises(ConfigError, match="leave num_data out"):  # sizes come from the labels
        setup_trainer(num_data=500)


def _noise_weights(input_scale, **kwargs):
    x, _, partial = two_classes()
    m = SSVAE(8, num_classes=2, latent=2, hidden=(8,), likelihood="gaussian", seed=1)
    transform = None if input_scale is None else InputNoise(input_scale)
    trainer = semi_supervised_trainer(
        m, num_classes=2, batch_size=16, transform=transform, **kwargs
    )
    state = trainer.init(0, (x, partial))
    trainer.train_epoch(state, (x, partial), 0)
    return m.get_weights()


def test_input_noise_is_added_to_training_batches():
    plain = _noise_weights(None)
    zero = _noise_weights(np.zeros((96, 8), np.float32))
    noisy = _noise_weights(np.full((96, 8), 0.5, np.float32))
    for k, v in plain.items():
        np.testing.assert_array_equal(zero[k], v, err_msg=k)
    assert any(not np.allclose(noisy[k], v) for k, v in plain.items())


@pytest.mark.parametrize(
    "scale, kwargs, error, match",
    [
        (np.ones((95, 8), np.float32), {}, DataError, "one standard deviation per"),
        (np.full((96, 8), np.nan, np.float32), {}, DataError, "finite"),
    ],
)
def test_bad_input_scale_is_refused(scale, kwargs, error, match):
    with pytest.raises(error, match=match):
        _noise_weights(scale, **kwargs)
