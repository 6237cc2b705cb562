"""The mirror guard: both backends export the same names and, given the same weights and the
same latent draws, compute the same log weights, ELBO and IWAE bound (float64, 1e-5)."""

import jax
import numpy as np
import pytest
import torch
from numpyro import handlers as nh
from pyro import poutine
from pyro.poutine.messenger import Messenger

import ppgen.inference.numpyro as inf_j
import ppgen.inference.pyro as inf_t
import ppgen.models.numpyro as mod_j
import ppgen.models.pyro as mod_t

# Same weights, same z, float64 everywhere: only summation order differs between backends.
ATOL = 1e-5


@pytest.fixture
def float64():
    old_dtype, old_x64 = torch.get_default_dtype(), jax.config.jax_enable_x64
    torch.set_default_dtype(torch.float64)
    jax.config.update("jax_enable_x64", True)
    yield
    torch.set_default_dtype(old_dtype)
    jax.config.update("jax_enable_x64", old_x64)


@pytest.mark.parametrize("pair", [(mod_t, mod_j), (inf_t, inf_j)], ids=["models", "inference"])
def test_same_public_names(pair):
    a, b = pair
    assert sorted(a.__all__) == sorted(b.__all__)


def _twins(name, x_dim, **kwargs):
    t = getattr(mod_t, name)(x_dim, seed=1, **kwargs)
    j = getattr(mod_j, name)(x_dim, seed=2, **kwargs)
    weights = {k: np.asarray(v, dtype=np.float64) for k, v in t.get_weights().items()}
    assert set(weights) == set(j.get_weights())
    for k, v in j.get_weights().items():
        assert v.shape == weights[k].shape, k
    t = t.double() if isinstance(t, torch.nn.Module) else t
    t.set_weights(weights)
    j.set_weights(weights)
    return t, j


CASES = [
    ("VAE", dict(latent=3, hidden=(8, 6)), {"z": (3,)}, "bernoulli"),
    (
        "VAE",
        dict(latent=3, hidden=(8,), likelihood="gaussian", scale="learned"),
        {"z": (3,)},
        "gaussian",
    ),
    (
        "HierarchicalVAE",
        dict(latents=(4, 2), hidden=((8,), (5,))),
        {"z1": (4,), "z2": (2,)},
        "bernoulli",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=["vae", "vae-gaussian", "hvae"])
@pytest.mark.parametrize("batch", [1, 5])
def test_same_bounds_for_same_weights_and_noise(float64, case, batch):
    name, kwargs, latents, lik = case
    k, x_dim = 4, 10
    rng = np.random.default_rng(0)
    x = (rng.random((batch, x_dim)) < 0.4).astype(np.float64)
    if lik == "gaussian":
        x = rng.random((batch, x_dim))
    z = {s: rng.normal(size=(k, batch, *shape)) for s, shape in latents.items()}
    t, j = _twins(name, x_dim, **kwargs)
    num_data = 3 * batch  # exercise the per-dataset scale too

    tg = poutine.condition(t.guide, data={s: torch.from_numpy(v) for s, v in z.items()})
    jg = nh.condition(j.guide, data={s: jax.numpy.asarray(v) for s, v in z.items()})
    key = jax.random.PRNGKey(0)
    xt, xj = torch.from_numpy(x), jax.numpy.asarray(x)

    lw_t = inf_t.log_weights(t.model, tg, xt, num_particles=k, num_data=num_data)
    lw_j = inf_j.log_weights(key, j.model, jg, xj, num_particles=k, num_data=num_data)
    assert lw_t.shape == lw_j.shape == (k, batch)
    np.testing.assert_allclose(lw_t.detach().numpy(), np.asarray(lw_j), rtol=0, atol=ATOL)

    for make in (lambda m: m.ELBO(num_particles=k), lambda m: m.IWAE(num_particles=k)):
        loss_t = make(inf_t)(t.model, tg, xt, num_data=num_data)
        loss_j = make(inf_j)(key, j.model, jg, xj, num_data=num_data)
        np.testing.assert_allclose(loss_t.item(), float(loss_j), rtol=0, atol=ATOL)
    # The bounds are what they claim to be: ELBO = scaled mean, IWAE = scaled logmeanexp.
    lw = lw_t.detach().numpy()
    iwae = (np.logaddexp.reduce(lw, axis=0) - np.log(k)).sum() * num_data / batch
    np.testing.assert_allclose(
        -inf_t.IWAE(num_particles=k)(t.model, tg, xt, num_data=num_data).item(), iwae, rtol=1e-10
    )


def test_linear_gaussian_exact_log_px_agrees(float64):
    t, j = _twins("LinearGaussian", 6, latent=2)
    x = np.random.default_rng(1).normal(size=(5, 6))
    np.testing.assert_allclose(
        t.exact_log_px(torch.from_numpy(x)).detach().numpy(),
        np.asarray(j.exact_log_px(jax.numpy.asarray(x))),
        atol=ATOL,
    )


class _FixZ(Messenger):
    """Pyro: give the guide's latent ``"z"`` the draws in ``z`` whose row count fits the site;
    it stays latent, so ``TraceEnum_ELBO`` replays it (``poutine.condition`` would make it
    observed, which Pyro's replay refuses)."""

    def __init__(self, *z):
        super().__init__()
        self.z = z

    def _pyro_sample(self, msg):
        if msg["name"] == "z" and not msg["is_observed"]:
            (msg["value"],) = [v for v in self.z if v.shape[-2] == msg["fn"].batch_shape[-1]]
            msg["done"] = True


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_same_semi_supervised_parts_for_same_weights_and_noise(float64, beta):
    """Labelled ELBO, enumerated unlabelled bound and classification term of M2 agree.

    Both backends enumerate the label along a leading dim, ``(C, 1)``, so the unlabelled
    ``z`` is ``(C, B, latent)`` on both sides.
    """
    c, b_l, b_u, latent = 3, 4, 5, 2
    t, j = _twins("SSVAE", 10, num_classes=c, latent=latent, hidden=(8,))
    rng = np.random.default_rng(0)
    x_l, x_u = ((rng.random((n, 10)) < 0.4).astype(np.float64) for n in (b_l, b_u))
    y_l = np.array([0, 2, 1, 2])
    z_l, z_u = rng.normal(size=(b_l, latent)), rng.normal(size=(c, b_u, latent))

    tg = _FixZ(torch.from_numpy(z_l), torch.from_numpy(z_u))(t.guide)
    z_j = {z.shape[-2]: jax.numpy.asarray(z) for z in (z_l[None], z_u)}

    def fix_z(site):
        if site["type"] == "sample" and site["name"] == "z":
            return z_j[site["fn"].batch_shape[-1]]
        return None

    jg = nh.substitute(j.guide, substitute_fn=fix_z)
    sizes = {"num_labelled": 12, "num_unlabelled": 50}  # exercise the per-set scales too
    parts_t = inf_t.SemiSupervisedELBO(beta=beta).parts(
        t.model, tg, *map(torch.from_numpy, (x_l, y_l, x_u)), **sizes
    )
    parts_j = inf_j.SemiSupervisedELBO(beta=beta).parts(
        jax.random.PRNGKey(0), j.model, jg, *map(jax.numpy.asarray, (x_l, y_l, x_u)), **sizes
    )
    assert parts_t.keys() == parts_j.keys() == {"labelled", "unlabelled", "classification"}
    for name, value in parts_t.items():
        np.testing.assert_allclose(value.item(), float(parts_j[name]), rtol=0, atol=ATOL)
