"""The mirror guard: both backends export the same names with the same signatures and, given
the same weights and the same latent draws, compute the same log weights, ELBO (also with
analytic KL and beta), IWAE bound, scaled log-densities and model outputs (float64, 1e-5)."""

import importlib
import inspect

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from numpyro import handlers as nh
from numpyro.primitives import Messenger as NumPyroMessenger
from pyro import poutine
from pyro.poutine.messenger import Messenger

import ppgen.inference.numpyro as inf_j
import ppgen.inference.pyro as inf_t
import ppgen.models.numpyro as mod_j
import ppgen.models.pyro as mod_t
from ppgen.inference.numpyro import handlers as handlers_j
from ppgen.inference.pyro import handlers as handlers_t

# Same weights, same z, float64 everywhere (the float64 fixture of conftest.py): only
# summation order differs between backends.
ATOL = 1e-5


# -- the same names and signatures ---------------------------------------------------------

MODULES = [
    "models",
    "models.base",
    "models.vae",
    "models.flow_vae",
    "models.ssvae",
    "models.nets",
    "models.linear_gaussian",
    "models.transforms",
    "models.splines",
    "models.coupling",
    "models.made",
    "models.autoregressive",
    "models.ar_dense",
    "models.fvsbn",
    "models.nade",
    "models.image_flows",
    "models.pixelcnn",
    "models.flow",
    "models.wavenet",
    "models.charrnn",
    "models.gan",
    "models.infogan",
    "models.bigan",
    "inference",
    "inference.objectives",
    "inference.loglik",
    "inference.particles",
    "inference.handlers",
    "inference.mcmc",
    "inference.train",
    "inference.aae",
    "inference.adversarial",
    "inference.infogan",
    "inference.bigan",
    "inference.discrepancy",
    "inference.implicit",
    "inference.sinkhorn",
    "inference.ssvae",
    "inference.noise",
    "inference.parallel",
    "inference.interop",
]

# Each backend names a Messenger class in its own idiom: Pyro's ``FooMessenger`` (as
# ``poutine.ScaleMessenger``), NumPyro's lower-case ``foo`` (as ``numpyro.handlers.scale``).
MESSENGERS = {"GuideReplayMessenger": "guide_replay", "LatentScaleMessenger": "latent_scale"}

# Names one backend has and the other needs not, each with its reason.
PYRO_ONLY = {
    # poutine.substitute matches a pyro.module parameter by its short name; NumPyro's
    # handlers.substitute already matches full names, so it needs no such handler.
    "inference.handlers": {"ParamSubstituteMessenger"},
    # torch needs numpy data converted (the Pyro trainer uses it too); JAX reads numpy as is.
    "inference.loglik": {"to_tensor"},
    # Pyro draws from torch's global generator: a run swaps its own generator state in
    # (GlobalRNG, seeded); JAX's randomness is an explicit key.
    "inference.interop": {"GlobalRNG", "seeded"},
    # A Pyro data-parallel process must draw the global batch's latents and keep its rows
    # (ShardedDraws, tile_rows); jax.random's values do not depend on how arrays are sharded.
    "inference.parallel": {"ShardedDraws", "tile_rows"},
}
# Names NumPyro has and Pyro needs not, each with its reason.
NUMPYRO_ONLY = {
    # numpy -> a device array in JAX's default dtype (Pyro's twin is loglik.to_tensor).
    "inference.interop": {"to_device"},
}
# Methods one backend's class has and the other's needs not: (Pyro's, NumPyro's), reasons.
OWN_METHODS = {
    # Pyro processes all-reduce the loss and the gradients by hand; XLA all-reduces inside
    # the compiled step, and the state and data are replicated over the mesh instead.
    "DataParallel": ({"mean", "average_gradients"}, {"replicate"}),
}
# Methods a NumPyro class writes itself where its Pyro twin inherits them from
# torch.nn.Module: the MLP's call (Pyro's is nn.Module.__call__ running ``forward``, whose
# signature is compared with it) and its weights under torch's keys and layout.
NUMPYRO_WRITES = {
    "MLP": {"__call__", "state_dict", "load_state_dict"},
    "MADE": {"__call__", "state_dict", "load_state_dict"},
    "FVSBN": {"__call__"},
    "NADE": {"__call__"},
    "ConvNet": {"__call__", "state_dict", "load_state_dict"},
    "GlowNet": {"__call__", "state_dict", "load_state_dict"},
    "WaveNet": {"__call__"},
    "LatentFlow": {"state_dict", "load_state_dict"},
    "PixelCNN": {"__call__"},
    "GatedPixelCNN": {"__call__"},
    "CharRNN": {"__call__"},
    "MLPCritic": {"__call__", "state_dict", "load_state_dict"},
    "DCGANCritic": {"__call__", "state_dict", "load_state_dict"},
    "DCGANGenerator": {"__call__", "state_dict", "load_state_dict"},
}
# Flow transforms whose Pyro twin inherits these from Pyro's own class (Planar, Radial and
# their conditional forms are Pyro's, given an inverse and a seeded constructor): the
# conditional ones' ``condition(context)``, and planar's ``u_hat`` (Pyro's takes u and w).
NUMPYRO_WRITES |= {"ConditionalPlanar": {"condition"}, "ConditionalRadial": {"condition"}}
NUMPYRO_WRITES |= {"ConditionedPlanar": {"u_hat"}, "Planar": {"u_hat"}}
# NamedTuples whose fields are each backend's own state: a train state holds torch tensors
# and the global RNG's state on Pyro, an ``SVIState`` on NumPyro.
OWN_FIELDS = {"TrainState"}


def _pair(name):
    """``"models.base"`` -> ``ppgen.models.pyro.base``, ``ppgen.models.numpyro.base``."""
    package, _, module = name.partition(".")
    return tuple(
        importlib.import_module(".".join(filter(None, ("ppgen", package, backend, module))))
        for backend in ("pyro", "numpyro")
    )


def _is_own(obj, module):
    """A function or class written in ``module`` itself (not imported into it)."""
    return (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__


def _params(fn, drop_self=True):
    """``(name, kind, default)`` of every parameter; annotations are backend types."""
    params = list(inspect.signature(fn).parameters.values())
    if drop_self and params and params[0].name == "self":
        params = params[1:]
    return [(p.name, p.kind, p.default) for p in params]


def _same_call(fn_t, fn_j, what):
    """Pyro's and NumPyro's parameters agree, but for NumPyro's leading ``rng_key`` (its
    explicit randomness, where Pyro draws from torch's global generator, or from a
    ``torch.Generator`` passed first as ``generator``)."""
    pt, pj = _params(fn_t), _params(fn_j)
    if pj[:1] and pj[0][0] == "rng_key" and pt[:1] and pt[0][0] == "generator":
        pt = pt[1:]
    if pj[:1] and pj[0][0] == "rng_key" and (not pt or pt[0][0] != "rng_key"):
        pj = pj[1:]
    assert pt == pj, f"{what}: Pyro {pt} != NumPyro {pj}"


def _ppgen_methods(cls):
    """Public methods (and ``__call__``) written in ppgen, not overriding a framework's
    (``nn.Module.forward``, ``Messenger.process_message``, ...)."""
    ours = [c for c in cls.__mro__ if c.__module__.startswith("ppgen.")]
    theirs = [c for c in cls.__mro__ if not c.__module__.startswith("ppgen.")]
    names = {
        name
        for c in ours
        for name, value in vars(c).items()
        if callable(value) and (not name.startswith("_") or name == "__call__")
    }
    return {n for n in names if not any(_framework_has(c, n) for c in theirs if c is not object)}


def _framework_has(cls, name):
    """Whether the framework class ``cls`` itself defines ``name``: not a function another
    library patched in (zuko adds ``call_and_ladj`` to torch's ``Transform`` on import)."""
    value = vars(cls).get(name)
    if value is None:
        return False
    module = getattr(value, "__module__", None) or cls.__module__
    return module.split(".")[0] == cls.__module__.split(".")[0]


def _own_init(cls):
    for c in cls.__mro__:
        if c.__module__.startswith("ppgen.") and "__init__" in vars(c):
            return vars(c)["__init__"]
    return None


def _same_class(cls_t, cls_j, what, messenger=False):
    if issubclass(cls_t, tuple):  # NamedTuple
        assert cls_t.__name__ in OWN_FIELDS or cls_t._fields == cls_j._fields, what
        return
    init_t, init_j = _own_init(cls_t), _own_init(cls_j)
    assert (init_t is None) == (init_j is None), what
    if messenger:
        # NumPyro's handlers take the wrapped fn first (handlers.scale(fn=None, scale=1.0)),
        # so each later parameter needs a default: compare the names after fn.
        names_t = [p[0] for p in _params(init_t)]
        names_j = [p[0] for p in _params(init_j)]
        assert names_j == ["fn", *names_t], what
    elif init_t is not None:
        _same_call(init_t, init_j, f"{what}.__init__")
    only_t, only_j = OWN_METHODS.get(cls_t.__name__, (set(), set()))
    methods_t = _ppgen_methods(cls_t) - only_t
    methods_j = _ppgen_methods(cls_j) - NUMPYRO_WRITES.get(cls_j.__name__, set()) - only_j
    assert methods_t == methods_j, f"{what}: Pyro {methods_t} != NumPyro {methods_j}"
    for name in methods_t:
        _same_call(getattr(cls_t, name), getattr(cls_j, name), f"{what}.{name}")
    if "__call__" in NUMPYRO_WRITES.get(cls_j.__name__, ()):
        _same_call(cls_t.forward, cls_j.__call__, f"{what}.forward")


@pytest.mark.parametrize("name", MODULES)
def test_same_public_names_and_signatures(name):
    mod_pyro, mod_numpyro = _pair(name)
    pyro_only, numpyro_only = PYRO_ONLY.get(name, set()), NUMPYRO_ONLY.get(name, set())
    to_j = {n: MESSENGERS.get(n, n) for n in mod_pyro.__all__ if n not in pyro_only}
    assert sorted(to_j.values()) == sorted(set(mod_numpyro.__all__) - numpyro_only)
    own_t = {n for n, v in vars(mod_pyro).items() if not n.startswith("_") and _is_own(v, mod_pyro)}
    own_j = {
        n for n, v in vars(mod_numpyro).items() if not n.startswith("_") and _is_own(v, mod_numpyro)
    }
    assert {MESSENGERS.get(n, n) for n in own_t - pyro_only} == own_j - numpyro_only
    for n in sorted(set(to_j) | (own_t - pyro_only)):
        a, b = getattr(mod_pyro, n), getattr(mod_numpyro, MESSENGERS.get(n, n))
        what = f"{name}.{n}"
        if inspect.isclass(a):
            _same_class(a, b, what, messenger=n in MESSENGERS)
        elif callable(a):
            _same_call(a, b, what)
        elif isinstance(a, dict):
            assert sorted(a) == sorted(b), what
        else:
            assert a == b, what


def test_the_signature_check_can_fail():
    def f(x, num_data=None): ...

    def g(rng_key, x, num_data=None): ...

    def h(x, num_data=1): ...

    _same_call(f, g, "rng_key first is allowed")
    with pytest.raises(AssertionError):
        _same_call(f, h, "another default")
    with pytest.raises(AssertionError):
        _same_call(g, f, "Pyro takes no rng_key")


# -- the same numbers ------------------------------------------------------------------------


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
IDS = ["vae", "vae-gaussian", "hvae"]


def _data(case, batch, k):
    _, _, latents, lik = case
    rng = np.random.default_rng(0)
    x = (rng.random((batch, 10)) < 0.4).astype(np.float64)
    if lik == "gaussian":
        x = rng.random((batch, 10))
    z = {s: rng.normal(size=(k, batch, *shape)) for s, shape in latents.items()}
    return x, z


class _FixLatents(Messenger):
    """Pyro: give each guide site named in ``values`` the one of its candidate values whose
    row count fits the site (``(batch,)`` labelled, ``(C, 1, batch)`` enumerated left of a
    one-particle plate). The site stays latent (drawn from q, as far as inference can tell:
    analytic KL applies, and it is replayed into the model), where ``poutine.condition``
    would make it observed."""

    def __init__(self, values):
        super().__init__()
        self.values = values

    def _pyro_sample(self, msg):
        if msg["name"] in self.values and not msg["is_observed"]:
            rows = msg["fn"].batch_shape[-1]
            (msg["value"],) = [v for v in self.values[msg["name"]] if v.shape[-2] == rows]
            msg["done"] = True


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("batch", [1, 5])
def test_same_bounds_for_same_weights_and_noise(float64, case, batch):
    k = 4
    x, z = _data(case, batch, k)
    t, j = _twins(case[0], 10, **case[1])
    num_data = 3 * batch  # exercise the per-dataset scale too

    tg = poutine.condition(t.guide, data={s: torch.from_numpy(v) for s, v in z.items()})
    jg = nh.condition(j.guide, data={s: jnp.asarray(v) for s, v in z.items()})
    key = jax.random.PRNGKey(0)
    xt, xj = torch.from_numpy(x), jnp.asarray(x)

    lw_t = inf_t.log_weights(t.model, tg, xt, num_particles=k, num_data=num_data)
    # NumPyro's side as jitted programs (the trainer's way), not dispatched op by op.
    lw_j = jax.jit(
        lambda key, x: inf_j.log_weights(key, j.model, jg, x, num_particles=k, num_data=num_data)
    )(key, xj)
    assert lw_t.shape == lw_j.shape == (k, batch)
    np.testing.assert_allclose(lw_t.detach().numpy(), np.asarray(lw_j), rtol=0, atol=ATOL)

    for make in (lambda m: m.ELBO(num_particles=k), lambda m: m.IWAE(num_particles=k)):
        loss_t = make(inf_t)(t.model, tg, xt, num_data=num_data)
        loss_j = jax.jit(
            lambda key, x, make=make: make(inf_j)(key, j.model, jg, x, num_data=num_data)
        )(key, xj)
        np.testing.assert_allclose(loss_t.item(), float(loss_j), rtol=0, atol=ATOL)
    # The bounds are what they claim to be: ELBO = scaled mean, IWAE = scaled logmeanexp.
    lw = lw_t.detach().numpy()
    iwae = (np.logaddexp.reduce(lw, axis=0) - np.log(k)).sum() * num_data / batch
    np.testing.assert_allclose(
        -inf_t.IWAE(num_particles=k)(t.model, tg, xt, num_data=num_data).item(), iwae, rtol=1e-10
    )


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("k", [1, 3])
def test_same_analytic_kl_elbo(float64, case, k):
    """``ELBO(analytic_kl=True)`` with the latents fixed but still drawn from q (so the KL
    applies: to every site of a VAE, to ``z2`` of the HVAE)."""
    batch = 4
    x, z = _data(case, batch, k)
    t, j = _twins(case[0], 10, **case[1])
    tg = _FixLatents({s: [torch.from_numpy(v)] for s, v in z.items()})(t.guide)
    jg = nh.substitute(j.guide, data={s: jnp.asarray(v) for s, v in z.items()})
    key = jax.random.PRNGKey(0)
    xt, xj = torch.from_numpy(x), jnp.asarray(x)
    for beta in (1.0, 0.4):
        analytic_t = inf_t.ELBO(k, analytic_kl=True, beta=beta)(t.model, tg, xt, num_data=8)
        analytic_j = jax.jit(  # one jitted program (the trainer's way), not op by op
            lambda key, x, beta=beta: inf_j.ELBO(k, analytic_kl=True, beta=beta)(
                key, j.model, jg, x, num_data=8
            )
        )(key, xj)
        np.testing.assert_allclose(analytic_t.item(), float(analytic_j), rtol=0, atol=ATOL)
        # The closed form was used: Monte Carlo at the same draws gives another value.
        mc = inf_t.ELBO(k, beta=beta)(t.model, tg, xt, num_data=8)
        assert abs(mc.item() - analytic_t.item()) > 1e-3


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_beta_weighted_elbo(float64, case):
    """``beta`` given to the constructor and per call agree with the other backend's, and
    differ from ``beta = 1`` (the latent terms really are weighted)."""
    k, batch = 3, 5
    x, z = _data(case, batch, k)
    t, j = _twins(case[0], 10, **case[1])
    tg = poutine.condition(t.guide, data={s: torch.from_numpy(v) for s, v in z.items()})
    jg = nh.condition(j.guide, data={s: jnp.asarray(v) for s, v in z.items()})
    key = jax.random.PRNGKey(0)
    xt, xj = torch.from_numpy(x), jnp.asarray(x)
    plain = inf_t.ELBO(k)(t.model, tg, xt).item()
    for beta in (0.0, 0.3, 2.5):
        by_attr_t = inf_t.ELBO(k, beta=beta)(t.model, tg, xt).item()
        by_call_t = inf_t.ELBO(k)(t.model, tg, xt, beta=beta).item()
        # NumPyro's side as jitted programs (the trainer's way), not dispatched op by op.
        by_attr_j = float(
            jax.jit(lambda key, x, beta=beta: inf_j.ELBO(k, beta=beta)(key, j.model, jg, x))(
                key, xj
            )
        )
        by_call_j = float(
            jax.jit(lambda key, x, b: inf_j.ELBO(k)(key, j.model, jg, x, beta=b))(
                key, xj, jnp.asarray(beta)
            )
        )
        np.testing.assert_allclose([by_attr_t, by_call_t, by_call_j], by_attr_j, atol=ATOL)
        assert abs(by_attr_t - plain) > 1e-3


def _program(backend):
    """``z ~ N(0, 1)``, ``w ~ N(z, 2)`` per datapoint, ``x ~ N(z + w, 1)``; the guide
    draws ``z`` and ``w`` from Gaussians of ``x``. The same program on either backend."""
    if backend == "pyro":
        import pyro as ppl
        import pyro.distributions as dist

        zeros = torch.zeros
    else:
        import numpyro as ppl
        import numpyro.distributions as dist

        zeros = jnp.zeros

    def model(x):
        with ppl.plate("data", x.shape[0]):
            z = ppl.sample("z", dist.Normal(zeros(x.shape[0]), 1.0))
            w = ppl.sample("w", dist.Normal(z, 2.0))
            ppl.sample("x", dist.Normal(z + w, 1.0), obs=x)

    def guide(x):
        with ppl.plate("data", x.shape[0]):
            ppl.sample("z", dist.Normal(0.5 * x, 0.7))
            ppl.sample("w", dist.Normal(0.2 * x, 1.5))

    return model, guide


def _normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def _scaled_log_density(backend, model, guide, x, values):
    """``(sum of scaled log p over the model, the same over the guide)`` at ``values``."""
    if backend == "pyro":
        g = poutine.trace(poutine.condition(guide, data=values)).get_trace(x)
        m = poutine.trace(handlers_t.replay(model, g)).get_trace(x)
        return m.log_prob_sum().item(), g.log_prob_sum().item()
    key = jax.random.PRNGKey(0)
    g = nh.trace(nh.seed(nh.condition(guide, data=values), key)).get_trace(x)
    m = nh.trace(nh.seed(handlers_j.replay(model, g), key)).get_trace(x)

    def total(tr):
        sites = [s for s in tr.values() if s["type"] == "sample"]
        return sum(
            float(jnp.sum(s["fn"].log_prob(s["value"]) * (s["scale"] or 1.0))) for s in sites
        )

    return total(m), total(g)


@pytest.mark.parametrize("exclude", [(), ("w",)])
def test_scale_latents_gives_the_same_scaled_log_density(float64, exclude):
    rng = np.random.default_rng(3)
    x, z, w = (rng.normal(size=4) for _ in range(3))
    out = {}
    for backend, handlers, to in (
        ("pyro", handlers_t, torch.from_numpy),
        ("numpyro", handlers_j, jnp.asarray),
    ):
        model, guide = _program(backend)
        values = {"z": to(z), "w": to(w)}
        plain = _scaled_log_density(backend, model, guide, to(x), values)
        scaled = _scaled_log_density(
            backend, *handlers.scale_latents(model, guide, 0.3, exclude=exclude), to(x), values
        )
        out[backend] = plain, scaled
    np.testing.assert_allclose(out["pyro"], out["numpyro"], rtol=0, atol=ATOL)
    # And it is the weighting it claims: the latents' terms times 0.3, the likelihood's not.
    (model_lp, guide_lp), (model_scaled, guide_scaled) = out["pyro"]
    lik = _normal_logpdf(x, z + w, 1.0).sum()
    prior = {"z": _normal_logpdf(z, 0, 1).sum(), "w": _normal_logpdf(w, z, 2.0).sum()}
    post = {"z": _normal_logpdf(z, 0.5 * x, 0.7).sum(), "w": _normal_logpdf(w, 0.2 * x, 1.5).sum()}
    weight = {s: 1.0 if s in exclude else 0.3 for s in ("z", "w")}
    np.testing.assert_allclose(model_lp, lik + sum(prior.values()), atol=1e-10)
    np.testing.assert_allclose(
        model_scaled, lik + sum(weight[s] * prior[s] for s in prior), atol=1e-10
    )
    np.testing.assert_allclose(guide_scaled, sum(weight[s] * post[s] for s in post), atol=1e-10)


def test_linear_gaussian_exact_log_px_agrees(float64):
    t, j = _twins("LinearGaussian", 6, latent=2)
    x = np.random.default_rng(1).normal(size=(5, 6))
    np.testing.assert_allclose(
        t.exact_log_px(torch.from_numpy(x)).detach().numpy(),
        np.asarray(j.exact_log_px(jnp.asarray(x))),
        atol=ATOL,
    )
    for a, b in zip(
        t.exact_posterior(torch.from_numpy(x)), j.exact_posterior(jnp.asarray(x)), strict=True
    ):
        np.testing.assert_allclose(a.detach().numpy(), np.asarray(b), atol=ATOL)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_same_encode_and_decode(float64, case):
    t, j = _twins(case[0], 10, **case[1])
    x, z = _data(case, 5, 1)
    z = next(iter(z.values()))[0] if case[0] == "VAE" else z["z1"][0]
    for a, b in zip(t.encode(torch.from_numpy(x)), j.encode(jnp.asarray(x)), strict=True):
        np.testing.assert_allclose(a.detach().numpy(), np.asarray(b), rtol=0, atol=ATOL)
    np.testing.assert_allclose(
        t.decode(torch.from_numpy(z)).detach().numpy(),
        np.asarray(j.decode(jnp.asarray(z))),
        atol=ATOL,
    )


def test_same_ssvae_methods(float64):
    """M2's deterministic methods: classify, encode, decode and analogies agree."""
    c = 3
    t, j = _twins("SSVAE", 10, num_classes=c, latent=2, hidden=(8,))
    rng = np.random.default_rng(0)
    x = (rng.random((5, 10)) < 0.4).astype(np.float64)
    y = np.array([0, 2, 1, 2, 0])
    z = rng.normal(size=(5, 2))
    xt, xj = torch.from_numpy(x), jnp.asarray(x)

    def close(a, b):
        np.testing.assert_allclose(a.detach().numpy(), np.asarray(b), rtol=0, atol=ATOL)

    close(t.classify(xt), j.classify(xj))
    np.testing.assert_array_equal(t.predict(xt).numpy(), np.asarray(j.predict(xj)))
    for a, b in zip(t.encode(xt, torch.from_numpy(y)), j.encode(xj, jnp.asarray(y)), strict=True):
        close(a, b)
    close(
        t.decode(torch.from_numpy(z), torch.from_numpy(y)), j.decode(jnp.asarray(z), jnp.asarray(y))
    )
    close(t.decode(torch.from_numpy(z), 1), j.decode(jnp.asarray(z), 1))
    close(t.analogies(xt, [0, 2, 1]), j.analogies(xj, [0, 2, 1]))


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_same_semi_supervised_parts_for_same_weights_and_noise(float64, beta):
    """Labelled ELBO, enumerated unlabelled bound and classification term of M2 agree.

    Both backends enumerate the label left of a one-particle plate, ``(C, 1, 1)``, so the
    unlabelled ``z`` is ``(C, 1, B, latent)`` on both sides.
    """
    c, b_l, b_u, latent = 3, 4, 5, 2
    t, j = _twins("SSVAE", 10, num_classes=c, latent=latent, hidden=(8,))
    rng = np.random.default_rng(0)
    x_l, x_u = ((rng.random((n, 10)) < 0.4).astype(np.float64) for n in (b_l, b_u))
    y_l = np.array([0, 2, 1, 2])
    z_l, z_u = rng.normal(size=(b_l, latent)), rng.normal(size=(c, 1, b_u, latent))

    tg = _FixLatents({"z": [torch.from_numpy(z_l), torch.from_numpy(z_u)]})(t.guide)
    z_j = {z.shape[-2]: jnp.asarray(z) for z in (z_l[None], z_u)}

    def fix_z(site):
        if site["type"] == "sample" and site["name"] == "z":
            return z_j[site["fn"].batch_shape[-1]]
        return None

    jg = nh.substitute(j.guide, substitute_fn=fix_z)
    sizes = {"num_labelled": 12, "num_unlabelled": 50}  # exercise the per-set scales too
    parts_t = inf_t.SemiSupervisedELBO(beta=beta).parts(
        t.model, tg, *map(torch.from_numpy, (x_l, y_l, x_u)), **sizes
    )
    # NumPyro's side as one jitted program (the trainer's way), not dispatched op by op.
    parts_j = jax.jit(
        lambda key, *data: inf_j.SemiSupervisedELBO(beta=beta).parts(
            key, j.model, jg, *data, **sizes
        )
    )(jax.random.PRNGKey(0), *map(jnp.asarray, (x_l, y_l, x_u)))
    assert parts_t.keys() == parts_j.keys() == {"labelled", "unlabelled", "classification"}
    for name, value in parts_t.items():
        np.testing.assert_allclose(value.item(), float(parts_j[name]), rtol=0, atol=ATOL)


OPTS = ("sgd", "adam")


@pytest.mark.parametrize(
    "case, optimizer, weight_decay",
    [
        *(
            pytest.param(c, o, 0.0, id=f"{i}-{o}")
            for c, i in zip(CASES, IDS, strict=True)
            for o in OPTS
        ),
        *(pytest.param(CASES[0], o, 0.5, id=f"{IDS[0]}-{o}-decay") for o in OPTS),
    ],
)
def test_same_trainer_step(float64, case, optimizer, weight_decay):
    """One trainer step on the same weights, batch and latent draws moves both backends'
    weights to the same values (the loss, its gradient and the optimiser's update agree),
    with and without weight decay (Adam: torch's AdamW against optax's decoupled decay)."""
    from ppgen.inference.optim import Group

    x, z = _data(case, 5, 1)
    t, j = _twins(case[0], 10, **case[1])
    before = t.get_weights()
    tg = _FixLatents({s: [torch.from_numpy(v)] for s, v in z.items()})(t.guide)
    jg = nh.substitute(j.guide, data={s: jnp.asarray(v) for s, v in z.items()})

    def step(wd):
        settings = dict(
            groups=[Group(optimizer=optimizer, lr=0.05, weight_decay=wd)],
            batch_size=5,
            num_data=20,
        )
        trainer_t = inf_t.Trainer(t.model, tg, inf_t.ELBO(), **settings)
        trainer_j = inf_j.Trainer(j.model, jg, inf_j.ELBO(), **settings)
        state_t, metrics_t = trainer_t.step(trainer_t.init(0, x), x)
        state_j, metrics_j = trainer_j.step(trainer_j.init(0, x), x)
        np.testing.assert_allclose(metrics_t["loss"], metrics_j["loss"], rtol=0, atol=ATOL)
        after_t = t.bind(trainer_t.params(state_t)).get_weights()
        t.set_weights(before)  # bind wrote the trained weights into the Pyro twin
        return after_t, j.bind(trainer_j.params(state_j)).get_weights()

    after_t, after_j = step(weight_decay)
    assert after_t.keys() == after_j.keys() == before.keys()
    for key in before:
        np.testing.assert_allclose(after_t[key], after_j[key], rtol=0, atol=ATOL, err_msg=key)
    assert max(np.abs(after_t[k] - before[k]).max() for k in before) > 1e-3  # it did move
    if weight_decay:  # the decay moved the weights further: lr * wd * w = 0.025 w
        plain = step(0.0)[1]
        assert max(np.abs(after_j[k] - plain[k]).max() for k in before) > 1e-3


# -- score-function objectives and the discrete-latent models ------------------------------


@pytest.mark.parametrize("name", ["models.sbn", "models.mixture", "inference.score"])
def test_score_modules_mirror(name):
    test_same_public_names_and_signatures(name)


DISCRETE = {
    "SigmoidBeliefNet": (dict(latent=3), "h", lambda rng, k, n: rng.random((k, n, 3)) < 0.5),
    "GaussianMixture": (
        dict(components=3, hidden=(4,)),
        "z",
        lambda rng, k, n: rng.integers(0, 3, (k, n)),
    ),
}


class _Given(Messenger):
    """Pyro: give the guide site ``name`` the value ``value``, keeping it latent."""

    def __init__(self, name, value):
        super().__init__()
        self.name, self.value = name, value

    def _pyro_sample(self, msg):
        if msg["name"] == self.name and not msg["is_observed"]:
            msg["value"] = self.value
            msg["done"] = True


class _Mutable(NumPyroMessenger):
    """NumPyro: keep each mutable site's value (the objective updates it in place)."""

    def __init__(self):
        super().__init__()
        self.values = {}

    def postprocess_message(self, msg):
        if msg["type"] == "mutable":
            self.values[msg["name"]] = msg["value"]


@pytest.mark.parametrize("name", sorted(DISCRETE))
def test_same_score_objectives_for_same_weights_and_draws(float64, name):
    """NVIL (with a moving-average state and a baseline network) and VIMCO: the same
    values, guide gradients (score terms included) and NVIL state updates on both backends
    for the same weights and the same discrete draws (fixed, still latent)."""
    kwargs, site, draw = DISCRETE[name]
    x_dim, k, batch = 6, 3, 4
    t, j = _twins(name, x_dim, **kwargs)
    rng = np.random.default_rng(0)
    x = (
        rng.random((batch, x_dim)) < 0.5
        if name == "SigmoidBeliefNet"
        else rng.normal(size=(batch, x_dim))
    )
    x = x.astype(np.float64)
    value = draw(rng, k, batch)
    value = value.astype(np.float64) if value.dtype == bool else value
    tg = _Given(site, torch.as_tensor(value))(t.guide)
    jg = nh.substitute(j.guide, data={site: jnp.asarray(value)})  # still latent
    net_t = mod_t.MLP([x_dim, 3, 1], "tanh", seed=0)
    net_j = mod_j.MLP([x_dim, 3, 1], "tanh").load_state_dict(
        {k_: v.detach().numpy() for k_, v in net_t.state_dict().items()}
    )
    state = {"mean": -2.0, "var": 9.0, "count": 3.0}
    enc_t = list(t.encoder.parameters())
    enc_j = eqx.partition(j.encoder, eqx.is_inexact_array)[0]
    xt, xj = torch.from_numpy(x), jnp.asarray(x)
    for obj_t, obj_j in [
        (inf_t.NVIL(net_t, num_particles=k), inf_j.NVIL(net_j, num_particles=k)),
        (inf_t.VIMCO(num_particles=k), inf_j.VIMCO(num_particles=k)),
    ]:
        fixed = {f"nvil$$${key}": torch.tensor(v) for key, v in state.items()}
        with handlers_t.ParamSubstituteMessenger(fixed):
            loss_t = obj_t(t.model, tg, xt, num_data=10)
        grads_t = torch.autograd.grad(loss_t, enc_t)

        def loss_j(enc, obj_j=obj_j):
            mutable = {k_: jnp.asarray(v) for k_, v in state.items()}
            data = {"encoder$params": enc, "nvil$state": mutable}
            seen = _Mutable()
            with seen, nh.seed(rng_seed=0), nh.substitute(data=data):
                out = obj_j(jax.random.PRNGKey(0), j.model, jg, xj, num_data=10)
            return out, seen.values.get("nvil$state")

        (value_j, state_j), grads_j = jax.jit(jax.value_and_grad(loss_j, has_aux=True))(enc_j)
        np.testing.assert_allclose(loss_t.item(), float(value_j), rtol=0, atol=ATOL)
        flat_j = [g for layer in grads_j.layers for g in (layer.weight, layer.bias)]
        for a, b in zip(grads_t, flat_j, strict=True):
            np.testing.assert_allclose(a.numpy(), np.asarray(b), rtol=0, atol=ATOL)
        if state_j is not None:  # NVIL: the same moving averages after the step
            for key in state:
                np.testing.assert_allclose(
                    fixed[f"nvil$$${key}"].item(), float(state_j[key]), rtol=1e-10
                )


@pytest.mark.parametrize("k", [1, 3])
def test_same_enumerated_elbo_and_iwae(float64, k):
    """A discrete latent summed out exactly gives the same ELBO and IWAE bound on both
    backends: M2's label enumerated in its guide (same weights, the same z per class and
    particle) and a Gaussian mixture whose label its model enumerates (no guide)."""
    c, b, latent = 3, 5, 2
    t, j = _twins("SSVAE", 10, num_classes=c, latent=latent, hidden=(8,))
    rng = np.random.default_rng(4)
    x = (rng.random((b, 10)) < 0.4).astype(np.float64)
    z = rng.normal(size=(c, k, b, latent))  # the label at dim -3, left of the particles

    def enumerate_y(msg):
        return {"enumerate": "parallel"} if msg["name"] == "y" else {}

    def fixed_z(fn):  # z of the enumerated run (its q has batch (C, 1, B)), else as drawn
        shape = tuple(fn.batch_shape)
        return len(shape) == 3 and shape[0] == c

    class FixZ(Messenger):
        def _pyro_sample(self, msg):
            if msg["name"] == "z" and fixed_z(msg["fn"]):
                msg["value"], msg["done"] = torch.from_numpy(z), True

    def fix_z(site):
        ok = site["type"] == "sample" and site["name"] == "z" and fixed_z(site["fn"])
        return jnp.asarray(z) if ok else None

    tg = poutine.infer_config(FixZ()(t.guide), enumerate_y)
    jg = nh.infer_config(nh.substitute(j.guide, substitute_fn=fix_z), config_fn=enumerate_y)
    xt, xj, key = torch.from_numpy(x), jnp.asarray(x), jax.random.PRNGKey(0)
    for objective in ("ELBO", "IWAE"):
        loss_t = getattr(inf_t, objective)(k)(t.model, tg, xt, num_data=20).item()
        loss_j = float(  # one jitted program (the trainer's way), not op by op
            jax.jit(
                lambda key, x, o=objective: getattr(inf_j, o)(k)(key, j.model, jg, x, num_data=20)
            )(key, xj)
        )
        np.testing.assert_allclose(loss_t, loss_j, rtol=0, atol=ATOL)
    # the bounds differ (ELBO <= IWAE with K = 1 already: the label is stratified)
    assert inf_t.IWAE(k)(t.model, tg, xt).item() < inf_t.ELBO(k)(t.model, tg, xt).item()

    locs = rng.normal(size=(c, 4))
    y = rng.normal(size=(b, 4))

    def mixture(ppl, dist, array):
        def model(x):
            with ppl.plate("data", x.shape[0]):
                label = ppl.sample(
                    "label",
                    dist.Categorical(array(np.ones(c) / c)),
                    infer={"enumerate": "parallel"},
                )
                ppl.sample("x", dist.Normal(array(locs)[label], 0.7).to_event(1), obs=x)

        return model, lambda x: None

    import numpyro
    import pyro

    mt, gt = mixture(pyro, pyro.distributions, torch.from_numpy)
    mj, gj = mixture(numpyro, numpyro.distributions, jnp.asarray)
    for objective in ("ELBO", "IWAE"):
        loss_t = getattr(inf_t, objective)(k)(mt, gt, torch.from_numpy(y)).item()
        loss_j = float(
            jax.jit(lambda key, x, o=objective: getattr(inf_j, o)(k)(key, mj, gj, x))(
                key, jnp.asarray(y)
            )
        )
        np.testing.assert_allclose(loss_t, loss_j, rtol=0, atol=ATOL)
