"""Fixtures for the tests that state one thing on both backends.

``backend`` runs a test once on Pyro and once on NumPyro through a small adapter: the same
test body converts arrays, draws randomness, traces programs and fixes latent draws the way
each backend does. ``float64`` switches both backends to 64-bit floats for the test.

One JAX compilation cache serves the whole session (every xdist worker and every
subprocess a test starts): many tests build the same small model afresh and jit it, and XLA
compiles each distinct program once instead of once per test. The cache is keyed by the
program itself, so a hit runs the very executable a compile would have built; it is a new
directory per session, removed at the end.

XLA compiles the suite's programs at LLVM optimisation level 0
(``--xla_backend_optimization_level=0``, set for this process and its subprocesses before
JAX starts, after any ``XLA_FLAGS`` of the caller): most of the suite's time on NumPyro is
compiling many small programs that then run for milliseconds, and level 0 compiles them
about 30% faster. It changes how the machine code is optimised, not what it computes
beyond the last bits of rounding (XLA's graph-level passes, fusion included, run as always;
no fast-math), so a test compares compiled with eager results to a tolerance, never bit for
bit; benchmarks and users' runs keep XLA's default.

Every process of the suite computes on one thread (torch's intra-op pool, OpenMP, MKL; XLA
keeps its own): pytest-xdist runs one worker per core, and Pyro's eager operations on the
tests' tiny batches only pay synchronisation for more threads, up to 20 times slower on a
loaded machine. Subprocesses inherit the setting through the environment, so a run split
between this process and another (kill -9, then resume) computes alike.
"""

import os
import shutil
import tempfile

# ruff: noqa: E402  (XLA's flags are set before jax and the libraries importing it load)
_XLA_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _XLA_FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):  # before jax starts
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FAST_COMPILE}".strip()

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions
import pyro
import pyro.distributions
import pytest
import torch
from numpyro import handlers as nh
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

import ppgen.inference.numpyro
import ppgen.inference.numpyro.handlers
import ppgen.inference.numpyro.particles
import ppgen.inference.pyro
import ppgen.inference.pyro.handlers
import ppgen.inference.pyro.particles
import ppgen.models.numpyro
import ppgen.models.pyro

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
torch.set_num_threads(1)

_CACHE_ENV = "PPGEN_TEST_JAX_CACHE"
_CACHE_SETTINGS = {  # jax's own flags, also read from the environment by subprocesses
    "JAX_COMPILATION_CACHE_DIR": None,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": 0.2,
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": 0,
}


def pytest_configure(config):
    """The session's JAX compilation cache: made by the controller (or a run without
    xdist) before any worker starts, inherited by the workers and subprocesses through the
    environment."""
    if _CACHE_ENV not in os.environ:
        directory = tempfile.mkdtemp(prefix="ppgen-test-jax-cache-")
        os.environ[_CACHE_ENV] = directory
        config._ppgen_jax_cache = directory  # this process made it: it removes it
        for name, value in _CACHE_SETTINGS.items():
            os.environ[name] = directory if value is None else str(value)
    for name, value in _CACHE_SETTINGS.items():  # this process: jax is already imported
        jax.config.update(name.lower(), os.environ[_CACHE_ENV] if value is None else value)


def pytest_unconfigure(config):
    directory = getattr(config, "_ppgen_jax_cache", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


class _FixLatents(Messenger):
    """Give the sample sites named in ``data`` those values, keeping them latent (drawn from
    q as far as inference can tell), where ``poutine.condition`` would make them observed."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def _pyro_sample(self, msg):
        if msg["name"] in self.data and not msg["is_observed"]:
            msg["value"] = self.data[msg["name"]]
            msg["done"] = True


class PyroBackend:
    """Pyro: torch tensors, torch's global generator, ``poutine`` handlers."""

    name = "pyro"
    ppl, dist = pyro, pyro.distributions  # to write a program once for both backends
    models = ppgen.models.pyro
    inference = ppgen.inference.pyro
    particles = ppgen.inference.pyro.particles

    def array(self, a):
        """``a`` as a tensor: integers as ``long``, floats in the default dtype."""
        a = np.asarray(a)
        dtype = torch.long if a.dtype.kind in "iu" else torch.get_default_dtype()
        return torch.as_tensor(a, dtype=dtype)

    def numpy(self, a):
        return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)

    def call(self, fn, *args, seed=0, **kwargs):
        """``fn(*args, **kwargs)``, its draws from torch's global generator seeded ``seed``."""
        pyro.set_rng_seed(seed)
        return fn(*args, **kwargs)

    def loss(self, objective, model, guide, *args, seed=0, **kwargs):
        return self.call(objective, model, guide, *args, seed=seed, **kwargs).item()

    def jit(self, fn):
        return fn  # Pyro runs eagerly

    def trace(self, fn, *args, seed=0, **kwargs):
        """The sample sites of one run (plates' subsample draws left out), by name."""
        pyro.set_rng_seed(seed)
        tr = poutine.trace(fn).get_trace(*args, **kwargs)
        return {
            name: site
            for name, site in tr.nodes.items()
            if site["type"] == "sample" and not site_is_subsample(site)
        }

    def traces(self, model, guide, *args, seed=0, **kwargs):
        """``(model trace, guide trace)``: the guide run, the model replayed on its draws."""
        pyro.set_rng_seed(seed)
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model = ppgen.inference.pyro.handlers.replay(model, guide_trace)
        return poutine.trace(model).get_trace(*args, **kwargs), guide_trace

    def param_names(self, fn, *args, **kwargs):
        with poutine.trace(param_only=True) as tr:
            fn(*args, **kwargs)
        return set(tr.trace.nodes)

    def condition(self, fn, data):
        return poutine.condition(fn, data={k: self.array(v) for k, v in data.items()})

    def fix(self, fn, data):
        """``fn`` with the sites in ``data`` given those values, still latent."""
        return _FixLatents({k: self.array(v) for k, v in data.items()})(fn)

    def validation_disabled(self):
        return pyro.validation_enabled(False)

    def grads(self, objectives, model, x, **kwargs):
        """For each objective (by name), the gradient of its loss with respect to every
        parameter of ``model``, by name (``None`` where none reached it)."""
        out = {}
        for key, objective in objectives.items():
            loss = objective(model.model, model.guide, self.array(x), **kwargs)
            assert loss.dim() == 0 and torch.isfinite(loss)
            params = dict(model.named_parameters())
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            out[key] = {
                name: None if g is None else g.numpy()
                for name, g in zip(params, grads, strict=True)
            }
        return out


class NumPyroBackend:
    """NumPyro: JAX arrays, explicit ``rng_key``, ``numpyro.handlers``."""

    name = "numpyro"
    ppl, dist = numpyro, numpyro.distributions  # to write a program once for both backends
    models = ppgen.models.numpyro
    inference = ppgen.inference.numpyro
    particles = ppgen.inference.numpyro.particles

    def array(self, a):
        """``a`` as a JAX array: integers as ints, floats in JAX's default float dtype."""
        a = np.asarray(a)
        return jnp.asarray(a) if a.dtype.kind in "iu" else jnp.asarray(a, dtype=float)

    def numpy(self, a):
        return np.asarray(a)

    def call(self, fn, *args, seed=0, **kwargs):
        """``fn(PRNGKey(seed), *args, **kwargs)``."""
        return fn(jax.random.PRNGKey(seed), *args, **kwargs)

    def loss(self, objective, model, guide, *args, seed=0, **kwargs):
        return float(self.call(objective, model, guide, *args, seed=seed, **kwargs))

    def jit(self, fn):
        return jax.jit(fn)

    def trace(self, fn, *args, seed=0, **kwargs):
        """The sample sites of one run, by name."""
        tr = nh.trace(nh.seed(fn, jax.random.PRNGKey(seed))).get_trace(*args, **kwargs)
        return {name: site for name, site in tr.items() if site["type"] == "sample"}

    def traces(self, model, guide, *args, seed=0, **kwargs):
        """``(model trace, guide trace)``: the guide run, the model replayed on its draws."""
        key = jax.random.PRNGKey(seed)
        guide_trace = nh.trace(nh.seed(guide, key)).get_trace(*args, **kwargs)
        model = ppgen.inference.numpyro.handlers.replay(model, guide_trace)
        return nh.trace(nh.seed(model, key)).get_trace(*args, **kwargs), guide_trace

    def param_names(self, fn, *args, **kwargs):
        tr = nh.trace(nh.seed(fn, jax.random.PRNGKey(0))).get_trace(*args, **kwargs)
        return {name for name, site in tr.items() if site["type"] == "param"}

    def condition(self, fn, data):
        return nh.condition(fn, data={k: self.array(v) for k, v in data.items()})

    def fix(self, fn, data):
        """``fn`` with the sites in ``data`` given those values, still latent."""
        return nh.substitute(fn, data={k: self.array(v) for k, v in data.items()})

    def validation_disabled(self):
        return numpyro.validation_enabled(False)

    def grads(self, objectives, model, x, **kwargs):
        """For each objective (by name), the gradient of its loss with respect to every param
        site of ``model`` (one leaf per array: ``encoder$params`` is a tree), in one
        compiled call."""
        x = self.array(x)
        params = {}
        for fn in (model.model, model.guide):
            tr = nh.trace(nh.seed(fn, jax.random.PRNGKey(0))).get_trace(x, **kwargs)
            params.update({n: s["value"] for n, s in tr.items() if s["type"] == "param"})

        def loss(params, objective):
            m = nh.substitute(model.model, data=params)
            g = nh.substitute(model.guide, data=params)
            return objective(jax.random.PRNGKey(0), m, g, x, **kwargs)

        grads = jax.jit(lambda p: {k: jax.grad(loss)(p, o) for k, o in objectives.items()})(params)
        out = {}
        for key, tree in grads.items():
            leaves = jax.tree_util.tree_leaves_with_path(tree)
            assert len(leaves) == len(jax.tree_util.tree_leaves(params))
            out[key] = {jax.tree_util.keystr(path): np.asarray(g) for path, g in leaves}
        return out


BACKENDS = {"pyro": PyroBackend(), "numpyro": NumPyroBackend()}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    """The test runs once per backend."""
    return BACKENDS[request.param]


@pytest.fixture
def float64():
    """Both backends compute in float64 for the test; the previous settings come back after."""
    old_dtype, old_x64 = torch.get_default_dtype(), jax.config.jax_enable_x64
    torch.set_default_dtype(torch.float64)
    jax.config.update("jax_enable_x64", True)
    yield
    torch.set_default_dtype(old_dtype)
    jax.config.update("jax_enable_x64", old_x64)


@pytest.fixture(autouse=True)
def _same_global_random_state():
    """Every test starts from torch's global generator seeded with 0, whatever ran before it
    in its process (pytest-xdist spreads the tests over processes in no fixed order), and
    leaves the generator as it found it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield
