"""ELBO and IWAE: what they compute, beta, analytic KL, gradients to every parameter."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine

from ppgen.errors import ConfigError
from ppgen.inference.pyro import ELBO, IWAE, log_weights
from ppgen.inference.pyro.handlers import replay
from ppgen.inference.pyro.particles import analytic_kl_sites as _analytic_kl_sites


def traces(model, guide, args, kwargs):
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    return poutine.trace(replay(model, guide_trace)).get_trace(*args, **kwargs), guide_trace, None
from ppgen.models.pyro import VAE, HierarchicalVAE

X_DIM = 10


@pytest.fixture(autouse=True)
def rng():
    pyro.set_rng_seed(0)


def make(kind):
    if kind == "vae":
        return VAE(X_DIM, latent=3, hidden=(8,), seed=1)
    if kind == "vae-gaussian":
        return VAE(X_DIM, latent=3, hidden=(8,), likelihood="gaussian", seed=1)
    return HierarchicalVAE(X_DIM, latents=(4, 2), hidden=((8,), (5,)), seed=1)


def data(kind, n):
    g = torch.Generator().manual_seed(3)
    if kind == "vae-gaussian":
        return torch.randn(n, X_DIM, generator=g)
    return (torch.rand(n, X_DIM, generator=g) < 0.3).to(torch.get_default_dtype())


LATENTS = {"vae": {"z": 3}, "vae-gaussian": {"z": 3}, "hvae": {"z1": 4, "z2": 2}}


def conditioned(m, kind, k, batch):
    z = {s: torch.randn(k, batch, d) for s, d in LATENTS[kind].items()}
    return poutine.condition(m.guide, data=z)


@pytest.mark.parametrize("kind", ["vae", "hvae"])
@pytest.mark.parametrize("batch, k", [(1, 1), (4, 3)])
def test_bounds_are_the_scaled_mean_and_logmeanexp_of_log_weights(float64, kind, batch, k):
    m, x = make(kind), data(kind, batch)
    guide, num_data = conditioned(m, kind, k, batch), 5 * batch
    log_w = log_weights(m.model, guide, x, num_particles=k, num_data=num_data).detach()
    scale = num_data / batch
    elbo = ELBO(num_particles=k)(m.model, guide, x, num_data=num_data)
    iwae = IWAE(num_particles=k)(m.model, guide, x, num_data=num_data)
    # Same terms summed in another order: float64 rounding only.
    assert elbo.item() == pytest.approx(-scale * log_w.mean(0).sum().item(), rel=1e-12)
    lme = torch.logsumexp(log_w, 0) - math.log(k)
    assert iwae.item() == pytest.approx(-scale * lme.sum().item(), rel=1e-12)


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_beta_weights_exactly_the_latent_terms(float64, kind):
    m, x = make(kind), data(kind, 4)
    guide = conditioned(m, kind, 1, 4)
    # With z fixed, -loss(beta) = log p(x|z) + beta (log p(z) - log q(z|x)), linear in beta.
    loss = {b: ELBO(beta=b)(m.model, guide, x, num_data=8).item() for b in (0.0, 0.3, 1.0)}
    # The likelihood term, computed independently: the model conditioned on the same z.
    guide_trace = poutine.trace(guide).get_trace(x)
    z = {s: guide_trace.nodes[s]["value"] for s in LATENTS[kind]}
    site = poutine.trace(poutine.condition(m.model, z)).get_trace(x).nodes["x"]
    log_lik = site["fn"].log_prob(site["value"]).sum().item() * 2  # num_data / batch = 2
    assert loss[0.0] == pytest.approx(-log_lik, rel=1e-12)
    assert loss[0.3] == pytest.approx(0.7 * loss[0.0] + 0.3 * loss[1.0], rel=1e-12)
    # A per-call beta (the trainer's annealing schedule) overrides the default.
    assert ELBO(beta=1.0)(m.model, guide, x, num_data=8, beta=0.3).item() == loss[0.3]


def draws(objective, m, x, n=150):
    return np.array([objective(m.model, m.guide, x).item() for _ in range(n)])


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_analytic_kl_has_the_same_mean_and_less_variance(float64, kind):
    m, x = make(kind), data(kind, 3)
    mc = draws(ELBO(), m, x)
    analytic = draws(ELBO(analytic_kl=True), m, x)
    se = math.sqrt(mc.var() / len(mc) + analytic.var() / len(analytic))
    assert abs(mc.mean() - analytic.mean()) < 4 * se  # same expectation, 4 standard errors
    if kind == "vae":  # every latent term is exact; the HVAE's z1 stays Monte Carlo
        assert analytic.var() < 0.8 * mc.var()


def test_analytic_kl_only_where_valid():
    for kind, expected in (("vae", ["z"]), ("hvae", ["z2"])):
        m, x = make(kind), data(kind, 2)
        model_trace, guide_trace, _ = traces(m.model, m.guide, (x,), {})
        # HVAE: p(z1 | z2) depends on z2, which the guide draws after z1, so z1 stays MC.
        assert _analytic_kl_sites(model_trace, guide_trace) == expected
    m = make("vae")
    model_trace, guide_trace, _ = traces(
        m.model, conditioned(m, "vae", 1, 2), (data("vae", 2),), {}
    )
    assert _analytic_kl_sites(model_trace, guide_trace) == []  # conditioned: not a draw from q


def test_beta_zero_analytic_equals_monte_carlo_likelihood_term(float64):
    m, x = make("vae"), data("vae", 4)
    pyro.set_rng_seed(5)
    a = ELBO(beta=0.0)(m.model, m.guide, x).item()
    pyro.set_rng_seed(5)
    b = ELBO(beta=0.0, analytic_kl=True)(m.model, m.guide, x).item()
    assert a == pytest.approx(b, rel=1e-12)  # same z, and the latent terms weigh nothing


OBJECTIVES = {
    "elbo": ELBO(),
    "elbo-analytic-k2": ELBO(num_particles=2, analytic_kl=True),
    "elbo-beta": ELBO(beta=0.5),
    "iwae": IWAE(num_particles=3),
}


@pytest.mark.parametrize("kind", ["vae", "vae-gaussian", "hvae"])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
@pytest.mark.parametrize("batch", [1, 5])
def test_gradients_reach_every_parameter(kind, name, batch):
    m, x = make(kind), data(kind, batch)
    loss = OBJECTIVES[name](m.model, m.guide, x, num_data=10)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(
    "make_objective",
    [lambda: ELBO(num_particles=0), lambda: ELBO(beta=-1.0), lambda: IWAE(num_particles=1.5)],
)
def test_bad_config(make_objective):
    with pytest.raises(ConfigError):
        make_objective()
