"""MMD and the Sinkhorn divergence as losses on a generator program
(ppgen.inference.{pyro,numpyro}.discrepancy): the unbiased MMD^2 estimate has the closed-form
value for two Gaussians as its mean and 0 for a distribution with itself, the two backends
agree on the same samples, and bad options are refused in one line."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from test_adversarial import batch, generators, pair_of_nets

import ppgen.inference.numpyro.discrepancy as ndis
import ppgen.inference.pyro.discrepancy as pdis
from ppgen.errors import ConfigError, DataError
from ppgen.inference.games import MMD_KERNELS


def mmd2_gaussians(mu1, s1, mu2, s2, d, bandwidths):
    """``MMD^2`` between ``N(mu1, s1^2 I_d)`` and ``N(mu2, s2^2 I_d)`` with a sum of Gaussian
    kernels: ``E exp(-|x - y|^2 / 2 b^2) = (b^2 / (b^2 + v))^(d/2) exp(-|m|^2 / 2 (b^2 + v))``
    for ``x - y ~ N(m, v I)``."""

    def mean_k(m2, v):
        return sum(
            (b**2 / (b**2 + v)) ** (d / 2) * np.exp(-m2 / (2 * (b**2 + v))) for b in bandwidths
        )

    gap = float(np.sum((np.asarray(mu1) - np.asarray(mu2)) ** 2))
    return mean_k(0.0, 2 * s1**2) + mean_k(0.0, 2 * s2**2) - 2 * mean_k(gap, s1**2 + s2**2)


def test_mmd2_estimate_has_the_closed_form_mean(float64):
    d, bandwidths = 3, (0.5, 2.0)
    mu1, mu2 = np.zeros(d), np.full(d, 0.7)
    exact = mmd2_gaussians(mu1, 1.0, mu2, 1.5, d, bandwidths)
    rng = np.random.default_rng(0)
    draws = [
        pdis.mmd2_unbiased(
            torch.as_tensor(rng.normal(mu1, 1.0, (200, d))),
            torch.as_tensor(rng.normal(mu2, 1.5, (300, d))),
            "gaussian",
            bandwidths,
        ).item()
        for _ in range(30)
    ]
    se = np.std(draws) / np.sqrt(len(draws))
    assert abs(np.mean(draws) - exact) < 4 * se + 1e-12, (np.mean(draws), exact, se)
    assert exact > 10 * se  # the test can tell the distributions apart


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_mmd2_of_a_distribution_with_itself_has_mean_zero(float64, kernel):
    """Unbiased: the estimate is 0 on average and often negative (the biased V-statistic
    would be positive every time)."""
    rng = np.random.default_rng(1)
    mmd2 = jax.jit(jax.vmap(lambda x, y: ndis.mmd2_unbiased(x, y, kernel, (1.0, 4.0))))
    draws = np.asarray(mmd2(rng.normal(size=(200, 30, 2)), rng.normal(size=(200, 40, 2))))
    se = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean()) < 4 * se
    assert (draws < 0).mean() > 0.2


@pytest.mark.parametrize("kernel", MMD_KERNELS)
def test_backends_agree_on_mmd2(float64, kernel):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(25, 4)), rng.normal(size=(35, 4)) + 0.3
    p = pdis.mmd2_unbiased(torch.as_tensor(x), torch.as_tensor(y), kernel, (0.5, 1.0, 3.0))
    n = ndis.mmd2_unbiased(jnp.asarray(x), jnp.asarray(y), kernel, (0.5, 1.0, 3.0))
    np.testing.assert_allclose(p.item(), float(n), rtol=1e-10)
    # symmetric in its two sets
    q = pdis.mmd2_unbiased(torch.as_tensor(y), torch.as_tensor(x), kernel, (0.5, 1.0, 3.0))
    assert q.item() == pytest.approx(p.item(), rel=1e-12)


def test_backends_agree_on_the_mmd_objective(float64):
    gen_p, gen_n = pair_of_nets((2, 8, 3), seed=3)
    pyro_model, numpyro_model, guide = generators(gen_p, gen_n)
    x, z = batch()
    for kernel in MMD_KERNELS:
        p = pdis.MMD(kernel, (1.0, 2.0))(
            pyro_model, guide, torch.as_tensor(x), z=torch.as_tensor(z), num_data=80
        )
        n = ndis.MMD(kernel, (1.0, 2.0))(
            jax.random.PRNGKey(0), numpyro_model, guide, jnp.asarray(x), z=jnp.asarray(z),
            num_data=80,
        )  # fmt: skip
        np.testing.assert_allclose(p.item(), float(n), rtol=1e-10)
        with torch.no_grad():
            fake = gen_p(torch.as_tensor(z))
        direct = 80 * pdis.mmd2_unbiased(fake, torch.as_tensor(x), kernel, (1.0, 2.0))
        assert p.item() == pytest.approx(direct.item(), rel=1e-12)
        p.backward()  # a gradient reaches the generator
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in gen_p.parameters())
        gen_p.zero_grad()


@pytest.mark.parametrize("module", [pdis, ndis], ids=["pyro", "numpyro"])
def test_bad_mmd_options_are_refused_in_one_line(module):
    for kwargs, match in (
        ({"kernel": "laplace"}, "unknown MMD kernel 'laplace'"),
        ({"bandwidths": (1.0, 0.0)}, "MMD bandwidths must be positive numbers"),
        ({"bandwidths": ()}, "MMD bandwidths must be positive numbers"),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            module.MMD(**kwargs)
        assert "\n" not in str(err.value)
    for epsilon in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="epsilon must be a finite number > 0"):
            module.Sinkhorn(epsilon=epsilon)
    for rho in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="rho must be a number > 0"):
            module.Sinkhorn(rho=rho)
    assert module.Sinkhorn(rho=float("inf")).rho is None  # POT's spelling of balanced


def test_samples_of_another_shape_are_refused(float64):
    gen_p, gen_n = pair_of_nets((2, 8, 2), seed=3)  # 2 features, the data has 3
    pyro_model, numpyro_model, guide = generators(gen_p, gen_n)
    x, z = batch()
    with pytest.raises(DataError, match=r"have shape \(16, 2\) but the data batch has shape"):
        pdis.MMD()(pyro_model, guide, torch.as_tensor(x), z=torch.as_tensor(z))
    with pytest.raises(DataError, match=r"have shape \(16, 2\) but the data batch has shape"):
        with numpyro.handlers.seed(rng_seed=0):
            ndis.MMD()(jax.random.PRNGKey(0), numpyro_model, guide, jnp.asarray(x),
                       z=jnp.asarray(z))  # fmt: skip


@pytest.mark.parametrize(("p", "rho"), [(1, None), (2, None), (2, 1.0)])
def test_backends_agree_on_the_sinkhorn_objective(float64, p, rho):
    gen_p, gen_n = pair_of_nets((2, 8, 3), seed=4)
    pyro_model, numpyro_model, guide = generators(gen_p, gen_n)
    x, z = batch()
    options = {"epsilon": 0.5, "p": p, "rho": rho, "threshold": 1e-9, "max_iterations": 20000}
    value_p = pdis.Sinkhorn(**options)(
        pyro_model, guide, torch.as_tensor(x), z=torch.as_tensor(z), num_data=80
    )
    value_n = ndis.Sinkhorn(**options)(
        jax.random.PRNGKey(0), numpyro_model, guide, jnp.asarray(x), z=jnp.asarray(z),
        num_data=80,
    )  # fmt: skip
    np.testing.assert_allclose(value_p.item(), float(value_n), rtol=1e-5)
    assert value_p.item() > 0
    value_p.backward()  # a gradient reaches the generator
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in gen_p.parameters())


def test_review_fixes_one_line_errors_and_numpy_numbers(float64):
    """From the fresh-clone review: a batch of one is refused, not a NaN; NumPy numbers are
    numbers; N is the "data" plate's size on both backends wherever the model writes "x"."""
    with pytest.raises(DataError, match="at least 2 examples in each set"):
        pdis.mmd2_unbiased(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(DataError, match="at least 2 examples in each set"):
        ndis.mmd2_unbiased(jnp.zeros((3, 2)), jnp.zeros((1, 2)))
    for module in (pdis, ndis):
        s = module.Sinkhorn(epsilon=np.float32(0.5), p=np.int64(1))
        assert (s.epsilon, s.p) == (0.5, 1) and type(s.p) is int
        assert module.MMD(bandwidths=np.float32(2.0)).bandwidths == (2.0,)

    def pyro_model(x, num_data=None):
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            z = pyro.sample("z", pyro.distributions.Normal(torch.zeros(len(x), 2), 1).to_event(1))
        pyro.deterministic("x", z + 1, event_dim=1)  # after the plate

    def numpyro_model(x, num_data=None):
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            z = numpyro.sample("z", numpyro.distributions.Normal(jnp.zeros((len(x), 2)), 1)
                               .to_event(1))  # fmt: skip
        numpyro.deterministic("x", z + 1)

    from ppgen.inference.numpyro.implicit import model_samples as n_samples
    from ppgen.inference.pyro.implicit import model_samples as p_samples

    x = np.zeros((10, 2))
    assert p_samples(pyro_model, (torch.as_tensor(x),), {"num_data": 400}).num_data == 400
    key = jax.random.PRNGKey(0)
    assert n_samples(key, numpyro_model, (jnp.asarray(x),), {"num_data": 400}).num_data == 400
