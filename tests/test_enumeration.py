"""Discrete latents summed out by enumeration, on both backends: a model-enumerated mixture
gives its exact log p(x) through ELBO, IWAE, log_weights and evaluate_log_likelihood for
either data-plate layout; a guide-enumerated label gives the q-weighted ELBO and the
stratified IWAE weight computed by hand (with a plate inside "data" and a scale handler);
the semi-supervised label sum is the same machinery; mcmc_latents sums discrete latents out
and refuses a model with nothing continuous to sample."""

import numpy as np
import pytest
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm

from ppgen.data import MISSING, LabelledBatches
from ppgen.errors import ConfigError

C, D, B = 3, 4, 5
RNG = np.random.default_rng(0)
LOCS = RNG.normal(size=(C, D)) * 2
W = RNG.normal(size=(D, C))
X = RNG.normal(size=(B, D)) * 2
ENUM = {"enumerate": "parallel"}


def mixture(backend, layout):
    """``z ~ Categorical(1/C)``, ``x | z ~ N(LOCS[z], 0.7)``, z enumerated in the model; the
    data plate at dim -1 (``to_event``) or at dim -2 with a feature plate inside."""
    ppl, dist = backend.ppl, backend.dist
    locs, probs = backend.array(LOCS), backend.array(np.ones(C) / C)

    def model(x, num_data=None):
        n = x.shape[0]
        if layout == "flat":
            with ppl.plate("data", num_data or n, subsample_size=n):
                z = ppl.sample("z", dist.Categorical(probs), infer=ENUM)
                ppl.sample("x", dist.Normal(locs[z], 0.7).to_event(1), obs=x)
        else:
            with ppl.plate("data", num_data or n, subsample_size=n, dim=-2):
                z = ppl.sample("z", dist.Categorical(probs), infer=ENUM)  # (batch, 1)
                with ppl.plate("feat", D, dim=-1):
                    ppl.sample("x", dist.Normal(locs[z][..., 0, :], 0.7), obs=x)

    def guide(x, num_data=None):
        pass

    return model, guide


def exact_log_px(x):
    """``log p(x_i)`` of the mixture, ``(batch,)``."""
    log_joint = norm.logpdf(x[:, None], LOCS, 0.7).sum(-1) + np.log(1 / C)  # (batch, C)
    return logsumexp(log_joint, axis=-1)


@pytest.mark.parametrize("layout", ["flat", "inner"])
def test_model_enumeration_gives_the_exact_marginal(backend, float64, layout):
    model, guide = mixture(backend, layout)
    x, inf = backend.array(X), backend.inference
    exact = exact_log_px(X)
    # the ELBO is E_q[log sum_z p(x, z)], exact here; per dataset with num_data (x4)
    assert backend.loss(inf.ELBO(), model, guide, x) == pytest.approx(-exact.sum(), abs=1e-8)
    loss = backend.loss(inf.ELBO(2), model, guide, x, num_data=4 * B)
    assert loss == pytest.approx(-4 * exact.sum(), abs=1e-8)
    assert backend.loss(inf.IWAE(3), model, guide, x) == pytest.approx(-exact.sum(), abs=1e-8)
    log_w = backend.numpy(backend.call(inf.log_weights, model, guide, x, num_particles=3))
    np.testing.assert_allclose(log_w, np.broadcast_to(exact, (3, B)), atol=1e-8)
    lml = backend.call(
        inf.evaluate_log_likelihood, model, guide, X, num_samples=7, batch_size=3, chunk_size=4
    )
    np.testing.assert_allclose(lml, exact, atol=1e-8)


def labelled_pair(backend, scale=1.0, with_z=True, locs=LOCS, w=W):
    """A label ``y`` the guide draws from ``q(y | x) = softmax(x W)``, a continuous ``z``
    (its guide depends on ``y``) and a likelihood over a feature plate inside ``"data"``
    (data at dim -2), optionally tempered by a ``scale`` handler."""
    ppl, dist = backend.ppl, backend.dist
    locs, w = backend.array(locs), backend.array(w)
    handlers = backend.ppl.poutine if backend.name == "pyro" else backend.ppl.handlers

    def model(x, y=None, num_data=None):
        n = x.shape[0]
        with ppl.plate("data", num_data or n, subsample_size=n, dim=-2):
            y = ppl.sample(
                "y", dist.Categorical(backend.array(np.ones(C) / C)), obs=None if y is None else y
            )
            shift = (
                ppl.sample("z", dist.Normal(backend.array(np.zeros((n, 1))), 1.0)) if with_z else 0
            )
            with ppl.plate("feat", D, dim=-1), handlers.scale(scale=scale):
                ppl.sample("x", dist.Normal(shift + locs[y][..., 0, :], 0.7), obs=x)

    def guide(x, y=None, num_data=None):
        n = x.shape[0]
        with ppl.plate("data", num_data or n, subsample_size=n, dim=-2):
            if y is None:
                y = ppl.sample("y", dist.Categorical(logits=(x @ w)[:, None, :]), infer=ENUM)
            if with_z:
                mean = (x - locs[y][..., 0, :]).sum(-1)[..., None] / D
                ppl.sample("z", dist.Normal(mean, 0.3))

    return model, guide


def by_hand(z, scale=1.0):
    """``(ELBO, stratified log weight)`` per row, for ``z[c, i]`` given per class and row."""
    log_q = log_softmax(X @ W, axis=-1).T  # (C, batch)
    mean = (X[None] - LOCS[:, None]).mean(-1)  # (C, batch)
    log_lik = norm.logpdf(X[None], z[..., None] + LOCS[:, None], 0.7).sum(-1)  # (C, batch)
    log_p = np.log(1 / C) + norm.logpdf(z) - norm.logpdf(z, mean, 0.3) + scale * log_lik
    elbo = (np.exp(log_q) * (log_p - log_q)).sum(0)
    return elbo, logsumexp(log_p, axis=0)


def test_guide_enumeration_is_the_q_weighted_sum_and_the_stratified_weight(backend, float64):
    """ELBO = sum_c q(c|x) [log p(x, c, z_c) - log q(c, z_c | x)]; the log weight (IWAE with
    one particle) is log sum_c p(x, c, z_c) / q(z_c | x, c), with z fixed per class."""
    model, guide = labelled_pair(backend)
    z = RNG.normal(size=(C, B))
    # the label at dim -4, left of the particle plate (-3) and the plates "data", "feat"
    fixed = backend.fix(guide, {"z": z.reshape(C, 1, B, 1)})
    x, inf = backend.array(X), backend.inference
    elbo, log_w = by_hand(z)
    assert backend.loss(inf.ELBO(), model, fixed, x) == pytest.approx(-elbo.sum(), abs=1e-8)
    assert backend.loss(inf.IWAE(1), model, fixed, x) == pytest.approx(-log_w.sum(), abs=1e-8)
    weights = backend.numpy(backend.call(inf.log_weights, model, fixed, x))
    np.testing.assert_allclose(weights, log_w[None], atol=1e-8)
    # the semi-supervised bound is the same sum (its label site enumerated by the objective)
    plain = backend.fix(labelled_pair(backend)[1], {"z": z.reshape(C, 1, B, 1)})
    u = backend.call(inf.SemiSupervisedELBO().unlabelled_bound, model, plain, x)
    assert float(u) == pytest.approx(elbo.sum(), abs=1e-8)


def test_the_label_sum_with_an_inner_plate_has_its_exact_expectation(backend, float64):
    """The program of ``shared/repros/label_sum_inner_plate_pyro.py``, on its own data, on
    both backends: the semi-supervised bound's expectation over ``z`` is -33.4407 (closed
    form below; every term is Gaussian). The repro states -32.9297 as the reference, but
    that is one draw of Pyro's ``TraceEnum_ELBO`` (one sample of ``z``, sd 0.41 over
    draws), not the value of the bound: the mean of 2000 such draws is -33.437."""
    import torch

    g = torch.Generator().manual_seed(0)  # the repro's torch.manual_seed(0), then W, then x
    w = torch.randn(D, C, generator=g, dtype=torch.float32).numpy().astype(np.float64)
    x = torch.randn(B, D, generator=g, dtype=torch.float32).numpy().astype(np.float64)
    locs = np.random.default_rng(0).normal(size=(C, D)).astype(np.float32).astype(np.float64)
    # E_z over q(z | x, c) = N(m_c, 0.3^2) of log p(x, c, z) - log q(z | x, c), closed form
    log_q = log_softmax(x @ w, axis=-1)  # (batch, C)
    a = x[:, None] - locs[None]  # (batch, C, D)
    m, s2, v = a.mean(-1), 0.3**2, 0.7**2
    log_lik = (-0.5 * np.log(2 * np.pi * v) - ((a - m[..., None]) ** 2 + s2) / (2 * v)).sum(-1)
    prior = -0.5 * np.log(2 * np.pi) - 0.5 * (m**2 + s2)
    entropy = 0.5 * np.log(2 * np.pi * np.e * s2)
    exact = (np.exp(log_q) * (np.log(1 / C) + prior + log_lik + entropy - log_q)).sum()
    assert exact == pytest.approx(-33.4407, abs=1e-4)
    model, guide = labelled_pair(backend, locs=locs, w=w)
    k = 4000  # standard error 0.41 / sqrt(k) = 0.0065
    u = backend.call(
        backend.inference.SemiSupervisedELBO(num_particles=k).unlabelled_bound,
        model,
        guide,
        backend.array(x),
    )
    assert float(u) == pytest.approx(exact, abs=0.03)  # 4.6 standard errors; -32.93 is 0.51


def test_a_scale_handler_is_respected_inside_the_label_sum(backend, float64):
    """A tempered likelihood (``scale(0.25)``) with the label summed out: exact ELBO and
    semi-supervised bound; the stratified weight needs one scale and says so."""
    model, guide = labelled_pair(backend, scale=0.25, with_z=False)
    x, inf = backend.array(X), backend.inference
    log_q = log_softmax(X @ W, axis=-1).T
    log_p = np.log(1 / C) + 0.25 * norm.logpdf(X[None], LOCS[:, None], 0.7).sum(-1)
    exact = (np.exp(log_q) * (log_p - log_q)).sum()
    assert backend.loss(inf.ELBO(), model, guide, x) == pytest.approx(-exact, abs=1e-8)
    u = backend.call(inf.SemiSupervisedELBO().unlabelled_bound, model, guide, x)
    assert float(u) == pytest.approx(exact, abs=1e-8)
    with pytest.raises(ConfigError, match="common scale"):
        backend.loss(inf.IWAE(2), model, guide, x)


@pytest.mark.parametrize("backend", ["pyro"], indirect=True)
def test_pyro_label_sum_agrees_with_trace_enum_elbo(backend, float64):
    """Pyro's own TraceEnum_ELBO on the same draws (same seed): the guide-enumerated ELBO
    and the semi-supervised bound are its value, with num_data scaling."""
    from pyro.infer import TraceEnum_ELBO

    from ppgen.inference.pyro import ELBO, SemiSupervisedELBO

    pyro = backend.ppl
    model, guide = labelled_pair(backend)
    x = backend.array(X)
    for k in (1, 3):
        pyro.set_rng_seed(4)
        ref = TraceEnum_ELBO(max_plate_nesting=2, num_particles=k, vectorize_particles=True)
        expected = ref.loss(model, guide, x, num_data=20)
        pyro.set_rng_seed(4)
        assert ELBO(k)(model, guide, x, num_data=20).item() == pytest.approx(expected, abs=1e-8)
    pyro.set_rng_seed(5)
    expected = -TraceEnum_ELBO(max_plate_nesting=2).loss(model, guide, x)
    pyro.set_rng_seed(5)
    plain = labelled_pair(backend)[1]
    assert SemiSupervisedELBO().unlabelled_bound(model, plain, x).item() == pytest.approx(
        expected, abs=1e-8
    )


@pytest.mark.parametrize("backend", ["pyro"], indirect=True)
def test_pyro_semi_supervised_objective_under_no_grad(backend, float64):
    import torch

    from ppgen.inference.pyro import SemiSupervisedELBO

    pyro = backend.ppl
    model, guide = labelled_pair(backend)
    x, y = backend.array(X), backend.array(np.arange(B) % C)[:, None]
    pyro.set_rng_seed(0)
    with_grad = SemiSupervisedELBO()(model, guide, x[:3], y[:3], x).item()
    pyro.set_rng_seed(0)
    with torch.no_grad():
        assert SemiSupervisedELBO()(model, guide, x[:3], y[:3], x).item() == with_grad


def test_enumeration_refusals(backend, float64):
    """Sequential enumeration, and a beta that weighs a summed-out site unlike the
    likelihood depending on it, are one-line ConfigErrors."""
    ppl, dist, inf = backend.ppl, backend.dist, backend.inference
    x = backend.array(X)

    def model(x, num_data=None):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample(
                "z",
                dist.Categorical(backend.array(np.ones(C) / C)),
                infer={"enumerate": "sequential"},
            )
            ppl.sample("x", dist.Normal(backend.array(LOCS)[z], 0.7).to_event(1), obs=x)

    def guide(x, num_data=None):
        pass

    with pytest.raises(ConfigError, match="parallel enumeration only"):
        backend.loss(inf.ELBO(), model, guide, x)
    enumerated, guide = mixture(backend, "flat")
    with pytest.raises(ConfigError, match="common scale"):
        backend.loss(inf.ELBO(beta=0.5), enumerated, guide, x)


def test_a_latent_the_guide_lacks_is_named_with_a_hint_for_data(backend, float64):
    """A site the model samples and the guide does not: one line naming it, and saying
    what to do if it was meant as data (a second array left out of the data)."""
    ppl, dist, inf = backend.ppl, backend.dist, backend.inference

    def model(x, s=None, num_data=None):
        with ppl.plate("data", x.shape[0]):
            s = ppl.sample("s", dist.Normal(0.0, 1.0), obs=s)
            ppl.sample("x", dist.Normal(s, 1.0), obs=x[:, 0])

    def guide(x, s=None, num_data=None):
        pass

    with pytest.raises(ConfigError, match="latent site 's'") as err:
        backend.loss(inf.ELBO(), model, guide, backend.array(X))
    assert "if 's' is data, pass it with the rest of the data" in str(err.value)
    assert "\n" not in str(err.value)


def test_semi_supervised_training_needs_unlabelled_examples(backend):
    """Every label present: one line saying unlabelled data is needed (not 'lower the batch
    size', which cannot help)."""
    m = backend.models.SSVAE(D, num_classes=C, latent=2, hidden=(4,), seed=0)
    x = (RNG.random((12, D)) < 0.5).astype(np.float32)
    y = np.arange(12) % C
    trainer = backend.inference.Trainer(
        m.model,
        m.guide,
        backend.inference.SemiSupervisedELBO(),
        batch_size=1,
        schedule=LabelledBatches(C),
    )
    assert MISSING not in y
    with pytest.raises(ConfigError, match="every example is labelled"):
        state = trainer.init(0, (x, y))
        trainer.train_epoch(state, (x, y), 0)


def test_mcmc_sums_discrete_latents_out(backend, float64):
    """A mixture with a continuous mean: NUTS samples the mean, the label is enumerated
    out; with no continuous latent there is nothing to sample."""
    ppl, dist, inf = backend.ppl, backend.dist, backend.inference
    x = backend.array(X[:3, :2])

    def model(x):
        mu = ppl.sample("mu", dist.Normal(backend.array(np.zeros(2)), 3.0).to_event(1))
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Categorical(backend.array(np.ones(2) / 2)))
            loc = mu * (1 - 2 * z[..., None])  # component 0 at mu, 1 at -mu
            ppl.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    idata = backend.call(inf.mcmc_latents, model, x, num_warmup=20, num_samples=20)
    assert list(idata.posterior.data_vars) == ["mu"]
    assert idata.posterior["mu"].values.shape == (1, 20, 2)

    def discrete_only(x):
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Categorical(backend.array(np.ones(2) / 2)))

    with pytest.raises(ConfigError, match="nothing to sample"):
        backend.call(inf.mcmc_latents, discrete_only, x, num_warmup=5, num_samples=5)


def test_pyro_mcmc_params_reach_pyro_module_networks(float64):
    """``params`` for a ``pyro.module`` network are what NUTS computes with (the posterior
    of z for weight 2: N(2 * 2 / (4 + 0.01), 0.1^2 / (4 + 0.01)) ~ mean 0.998, sd 0.050),
    and the network's own weight is restored afterwards."""
    import pyro
    import pyro.distributions as dist
    import torch

    from ppgen.inference.pyro import mcmc_latents

    pyro.set_rng_seed(0)
    dec = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        dec.weight.fill_(0.0)

    def model(x):
        pyro.module("dec", dec)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([1]).to_event(1))
            pyro.sample("x", dist.Normal(dec(z), 0.1).to_event(1), obs=x)

    x = torch.tensor([[2.0]])
    params = {"dec$$$weight": torch.tensor([[2.0]])}
    idata = mcmc_latents(model, x, params=params, num_warmup=100, num_samples=200)
    z = idata.posterior["z"].values
    mean, sd = 4 / 4.01, 0.1 / np.sqrt(4.01)
    assert abs(z.mean() - mean) < 4 * sd  # a few Monte Carlo errors at most
    assert 0.5 * sd < z.std() < 1.5 * sd
    assert dec.weight.item() == 0.0
