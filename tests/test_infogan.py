"""InfoGAN (ppgen.models.{pyro,numpyro}.infogan, ppgen.inference.{pyro,numpyro}.infogan, the
``infogan`` recipe): both backends agree on the losses and the bound on the same weights and
codes; the bound L_I equals a hand computation (and H(c) where the guide reads the code back
exactly); each player's update leaves the other's parameters alone, the guide's moving with
the generator's; bad input is refused in one line; the recipe trains, draws a traversal per
code, evaluates and samples through the command line."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro import handlers
from pyro import poutine
from scipy.special import log_softmax

import ppgen.inference.numpyro.infogan as ninfo
import ppgen.inference.pyro.infogan as pinfo
import ppgen.models.numpyro.gan as ngan
import ppgen.models.numpyro.infogan as nmodel
import ppgen.models.pyro.gan as pgan
import ppgen.models.pyro.infogan as pmodel
from ppgen import runs
from ppgen.errors import ConfigError, DataError
from ppgen.inference.pyro.adversarial import Adversarial as PAdversarial
from ppgen.models.pyro.nets import net_weights
from tests.cli_helpers import cli, one_line

B, N = 12, 96  # batch, and the "data" plate's full size (losses are N x a batch mean)


def twins(architecture="mlp"):
    """The same InfoGenerator and critic on both backends (Pyro's weights copied over)."""
    if architecture == "dcgan":
        shape, kw = (784,), {"z_dim": 3, "hidden": (8, 4), "architecture": "dcgan"}
        crit_p = pgan.DCGANCritic(shape, channels=4, seed=5)
        crit_n = ngan.DCGANCritic(shape, channels=4).load_state_dict(net_weights(crit_p))
    else:
        shape, kw = (2,), {"z_dim": 3, "hidden": (8, 8), "output": "identity"}
        crit_p = pgan.MLPCritic(2, hidden=(8,), seed=5)
        crit_n = ngan.MLPCritic(2, hidden=(8,)).load_state_dict(net_weights(crit_p))
    gen_p = pmodel.InfoGenerator(shape, categorical=(4, 3), continuous=2, seed=1, **kw)
    gen_n = nmodel.InfoGenerator(shape, categorical=(4, 3), continuous=2, seed=2, **kw)
    gen_n.set_weights(gen_p.get_weights())
    return gen_p, gen_n, crit_p, crit_n


def fixed_draws(gen, seed=0):
    """Values of z and every code for a batch: the same noise on both backends."""
    rng = np.random.default_rng(seed)
    out = {"z": rng.normal(size=(B, gen.z_dim))}
    for name, k in gen.codes.items():
        out[name] = rng.integers(k, size=B) if k else rng.uniform(-1, 1, B)
    return out


@pytest.mark.parametrize(
    ("architecture", "loss"), [("mlp", "nonsaturating"), ("mlp", "wgan-gp"), ("dcgan", "hinge")]
)
def test_backends_agree_on_the_infogan_losses(float64, architecture, loss):
    gen_p, gen_n, crit_p, crit_n = twins(architecture)
    draws = fixed_draws(gen_p)
    x = np.random.default_rng(1).uniform(size=(B, gen_p.x_dim))
    options = {"loss": loss, "gradient_penalty": 0.0}
    model_p = poutine.condition(gen_p.model, data={k: torch.as_tensor(v) for k, v in draws.items()})
    model_n = handlers.condition(gen_n.model, data={k: jnp.asarray(v) for k, v in draws.items()})
    out_p = pinfo.InfoGAN(crit_p, info_weight=0.7, **options)(
        model_p, gen_p.guide, torch.as_tensor(x), num_data=N
    )
    adv_p = PAdversarial(crit_p, **options)(model_p, gen_p.guide, torch.as_tensor(x), num_data=N)
    key = jax.random.PRNGKey(0)
    with handlers.seed(rng_seed=0):  # the networks' eqx_module outside a trainer
        out_n = ninfo.InfoGAN(crit_n, info_weight=0.7, **options)(
            key, model_n, gen_n.guide, jnp.asarray(x), num_data=N
        )
    assert set(out_p) == set(out_n) == {"critic", "generator", "mutual_information"}
    for name in out_p:  # float64, the same weights and draws: agreement to rounding
        np.testing.assert_allclose(out_p[name].item(), float(out_n[name]), rtol=1e-9)
    # The game is Adversarial's; the generator's loss is lowered by lambda L_I.
    assert out_p["critic"].item() == pytest.approx(adv_p["critic"].item(), rel=1e-12)
    expected = adv_p["generator"].item() - 0.7 * out_p["mutual_information"].item()
    assert out_p["generator"].item() == pytest.approx(expected, rel=1e-12)
    # Asked for one player, each objective returns what it computes with both.
    critic_only = pinfo.InfoGAN(crit_p, **options)(
        model_p, gen_p.guide, torch.as_tensor(x), player="critic", num_data=N
    )
    assert set(critic_only) == {"critic"}
    assert critic_only["critic"].item() == pytest.approx(out_p["critic"].item(), rel=1e-12)


def categorical_pair(backend, k, sharpness):
    """A user's generator with one categorical code ``c ~ Cat(1/k)`` and ``x = onehot(c) +
    0.1 z``, and a guide with known logits ``sharpness * x``; no parameters at all."""
    if backend == "pyro":

        def model(x, num_data=None):
            with pyro.plate("data", num_data, subsample=torch.arange(len(x))):
                z = pyro.sample("z", pdist.Normal(torch.zeros(len(x), k), 1.0).to_event(1))
                c = pyro.sample("c", pdist.Categorical(logits=torch.zeros(len(x), k)))
                x_gen = torch.nn.functional.one_hot(c, k).to(z.dtype) + 0.1 * z
                pyro.deterministic("x", x_gen, event_dim=1)

        def guide(x, num_data=None):
            with pyro.plate("data", num_data, subsample=torch.arange(len(x))):
                pyro.sample("c", pdist.Categorical(logits=sharpness * x))

        return model, guide

    def model(x, num_data=None):
        with numpyro.plate("data", num_data, subsample_size=x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros(k), 1.0).to_event(1))
            c = numpyro.sample("c", ndist.Categorical(logits=jnp.zeros(k)))
            numpyro.deterministic("x", jax.nn.one_hot(c, k) + 0.1 * z)

    def guide(x, num_data=None):
        with numpyro.plate("data", num_data, subsample_size=x.shape[0]):
            numpyro.sample("c", ndist.Categorical(logits=sharpness * x))

    return model, guide


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_bound_of_a_categorical_code_is_the_hand_computation(float64, backend):
    """``L_I = N mean_b log q(c_b | x_b) + N log K`` with ``q``'s logits known; with a guide
    that reads the code back exactly, ``L_I`` reaches ``H(c) = log K`` per example."""
    k = 5
    for sharpness, exact in ((1.5, False), (60.0, True)):
        model, guide = categorical_pair(backend, k, sharpness)
        if backend == "pyro":
            data = torch.zeros(B, k)
            trace = poutine.trace(model).get_trace(data, num_data=N)
            bound = pinfo.mutual_information_bound(trace, guide, (data,), {"num_data": N})
            bound = bound.item()
            x, c = (trace.nodes[s]["value"].numpy() for s in ("x", "c"))
        else:
            data = jnp.zeros((B, k))
            trace = handlers.trace(handlers.seed(model, 3)).get_trace(data, num_data=N)
            bound = ninfo.mutual_information_bound(
                jax.random.PRNGKey(0), trace, guide, (data,), {"num_data": N}
            )
            x, c = (np.asarray(trace[s]["value"]) for s in ("x", "c"))
        log_q = log_softmax(sharpness * x, axis=-1)[np.arange(B), c]
        hand = N * log_q.mean() + N * np.log(k)
        assert float(bound) == pytest.approx(hand, rel=1e-10)
        assert float(bound) <= N * np.log(k) + 1e-9  # log q <= 0: L_I never passes H(c)
        if exact:
            assert float(bound) / N == pytest.approx(np.log(k), abs=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_bound_of_a_continuous_code_is_the_hand_computation(float64, backend):
    """For ``c ~ U(-1, 1)`` and ppgen's recognition Gaussian, ``L_I = N mean_b log N(c_b;
    mu(x_b), sigma(x_b)) + N log 2``: read off the InfoGenerator's own networks."""
    gen_p, gen_n, _, _ = twins()
    gen = gen_p if backend == "pyro" else gen_n
    if backend == "pyro":
        data = torch.zeros(B, 2)
        trace = poutine.trace(gen.model).get_trace(data, num_data=N)
        bound = pinfo.mutual_information_bound(
            trace, gen.guide, (data,), {"num_data": N}, codes=("c_cont1",)
        ).item()
        x, c = trace.nodes["x"]["value"].detach(), trace.nodes["c_cont1"]["value"].numpy()
        out = gen.recognition(x).detach().numpy()
    else:
        data = jnp.zeros((B, 2))
        with handlers.seed(rng_seed=1):
            trace = handlers.trace(gen.model).get_trace(data, num_data=N)
            bound = ninfo.mutual_information_bound(
                jax.random.PRNGKey(0), trace, gen.guide, (data,), {"num_data": N},
                codes=("c_cont1",),
            )  # fmt: skip
        x, c = trace["x"]["value"], np.asarray(trace["c_cont1"]["value"])
        out = np.asarray(gen.recognition(x))
    # Output layout [logits 4, logits 3, mu 2, pre 2]; sigma = softplus(pre) + 1e-4.
    mu, sigma = out[:, 8], np.logaddexp(0.0, out[:, 10]) + 1e-4
    log_q = -0.5 * ((c - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
    assert float(bound) == pytest.approx(N * log_q.mean() + N * np.log(2.0), rel=1e-10)


PLAYERS_PARAMS = ("critic", "generator", "recognition")


def trainer_of(backend, lr_critic, lr_generator, critic_first):
    gen_p, gen_n, crit_p, crit_n = twins()
    inference = __import__(f"ppgen.inference.{backend}", fromlist=["Trainer"])
    gen, crit = (gen_p, crit_p) if backend == "pyro" else (gen_n, crit_n)
    objective = inference.InfoGAN(crit)
    groups = objective.groups(
        lr_critic=lr_critic, lr_generator=lr_generator, critic_first=critic_first
    )
    trainer = inference.Trainer(gen.model, gen.guide, objective, groups=groups, batch_size=B)
    return trainer, np.random.default_rng(0).normal(size=(B, 2)).astype(np.float32)


def player_params(trainer, state, prefix):
    out = {}
    for k, v in trainer.params(state).items():
        if k.startswith(prefix):
            if torch.is_tensor(v):
                out[k] = v.detach().numpy().copy()
            else:
                leaves = jax.tree_util.tree_leaves_with_path(v)
                out.update({k + jax.tree_util.keystr(p): np.asarray(a).copy() for p, a in leaves})
    return out


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_each_player_moves_only_its_own_parameters(backend):
    """Adam's first update moves every parameter by at most its group's learning rate (by
    ``lr * g / (|g| + eps)``): with one player's rate 100 times the other's, the slow
    player's parameters moving no more than its own rate shows the fast player's update
    never touched them. The guide ``q(c | x)`` is the generator player's, moving with it."""
    slow, fast = 1e-4, 1e-2
    for lr_critic, lr_generator, kept in ((slow, fast, ("critic",)),
                                          (fast, slow, ("generator", "recognition"))):  # fmt: skip
        trainer, x = trainer_of(backend, lr_critic, lr_generator, critic_first=True)
        state = trainer.init(0, x)
        before = {p: player_params(trainer, state, p) for p in PLAYERS_PARAMS}
        state, metrics = trainer.step(state, x)
        assert {"loss_critic", "loss_generator"} <= set(metrics)
        for p in PLAYERS_PARAMS:
            lr = lr_critic if p == "critic" else lr_generator
            moved = max(np.abs(a - before[p][k]).max() for k, a in
                        player_params(trainer, state, p).items())  # fmt: skip
            if p in kept:  # float32 parameters: their rounding on top of the step
                assert moved <= lr * 1.001, (p, moved, lr)
            assert moved >= lr * 0.99, (p, moved, lr)  # and every network moved


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_bad_input_is_refused_in_one_line(backend):
    info = pinfo if backend == "pyro" else ninfo
    gan, model_mod = (pgan, pmodel) if backend == "pyro" else (ngan, nmodel)
    crit = gan.MLPCritic(2, hidden=(4,))
    for kwargs, match in (
        ({"info_weight": -1.0}, "info_weight must be a finite number >= 0"),
        ({"info_weight": float("nan")}, "info_weight must be a finite number >= 0"),
        ({"codes": ()}, "codes must be None"),
        ({"codes": (3,)}, "codes must be None"),
        ({"loss": "wgan"}, "unknown adversarial loss"),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            info.InfoGAN(crit, **kwargs)
        assert "\n" not in str(err.value)
    for kwargs, match in (
        ({"categorical": (), "continuous": 0}, "needs at least one code"),
        ({"categorical": (1,)}, "each >= 2"),
        ({"continuous": -1}, "number .>= 0. of continuous codes"),
        ({"z_dim": 0}, "z_dim must be None or an integer >= 1"),
    ):
        with pytest.raises(ConfigError, match=match):
            model_mod.InfoGenerator((2,), **kwargs)
    plain = gan.Generator((2,), hidden=(4,), output="identity")  # no codes, an empty guide
    coded = model_mod.InfoGenerator((2,), hidden=(4,), categorical=(3,), continuous=1)
    draw = (
        coded.sample
        if backend == "pyro"
        else functools.partial(coded.sample, jax.random.PRNGKey(0))
    )
    for kwargs, match in (({"c_cat0": 3}, "takes categories 0..2"),
                          ({"c_cat0": 0.5}, "takes integer categories"),
                          ({"c_cat9": 1}, "unknown code")):  # fmt: skip
        with pytest.raises(DataError, match=match):
            draw(4, **kwargs)
    with pytest.raises(DataError, match="give every code of this generator"):
        coded.generate(torch.zeros(4, 2) if backend == "pyro" else jnp.zeros((4, 2)))
    cases = (
        (plain, {}, "the guide samples none of the model's sites"),
        (coded, {"codes": ("c_cat0", "c_cat1")}, "model has no code site 'c_cat1'"),
        (coded, {"codes": ("c_cat0", "z")}, "guide does not sample the code site 'z'"),
        (coded, {"site": "z"}, "deterministic site of the model"),
    )
    x = np.zeros((B, 2), np.float32)
    for gen, kwargs, match in cases:
        objective = info.InfoGAN(crit, **kwargs)
        with pytest.raises(ConfigError, match=match) as err:
            if backend == "pyro":
                objective(gen.model, gen.guide, torch.as_tensor(x))
            else:
                with handlers.seed(rng_seed=0):
                    objective(jax.random.PRNGKey(0), gen.model, gen.guide, jnp.asarray(x))
        assert "\n" not in str(err.value)


def test_the_recipe_refuses_bad_codes_in_one_line(tmp_path):
    base = ("train", "infogan", "--dataset", "ring8", "--epochs", "1", "--quiet", "--out",
            tmp_path / "run")  # fmt: skip
    line = one_line(cli(*base, "--categorical", "", "--continuous", "0"))
    assert "needs at least one code" in line
    assert "categorical" in one_line(cli(*base, "--categorical", "10,1"))
    assert "info-weight" in one_line(cli(*base, "--info-weight", "-1"))


def test_the_recipe_trains_draws_traversals_evaluates_and_samples(tmp_path):
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "infogan", "--backend", "pyro", "--dataset", "ring8", "--categorical", "3",
        "--continuous", "1", "--hidden", "8,8", "--epochs", "1", "--batch-size", "1000",
        "--quiet", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    for name in ("samples_2d.png", "curves.png", "traversals_c_cat0.png",
                 "traversals_c_cont0.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"loss_critic", "loss_generator", "valid_modes", "valid_hq_share"} <= set(record)
    # the bound per example: at most H(c) of the categorical code, log 3 (the uniform code's
    # differential entropy term cancels in expectation, so only a loose check on it)
    assert np.isfinite(record["mutual_information"])
    code, stdout, err = cli("eval", out, "--json", "--limit", "300")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["num_modes"] == 8 and result["samples"] == 300
    run = runs.load_trained(out)
    assert run.model.codes == {"c_cat0": 3, "c_cont0": None}
    x = runs.sample(run, 5, seed=2)
    assert x.shape == (5, 2) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, runs.sample(run, 5, seed=2))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_image_traversals_hold_z_along_each_row(tmp_path, backend):
    """A traversal of an image generator is a grid of 8 rows (fixed z and other codes) by
    the code's values (its categories; 10 steps on [-2, 2] when continuous); along a row only
    the code changes (held fixed too, every column gives the same image)."""
    from types import SimpleNamespace

    from matplotlib.image import imread

    from ppgen.recipes.base import backend as backend_of
    from ppgen.recipes.infogan import INFOGAN, traversal_codes

    models = backend_of(backend).models
    gen = models.InfoGenerator((784,), z_dim=3, categorical=(4,), continuous=1,
                               architecture="dcgan", hidden=(8, 4))  # fmt: skip
    run = SimpleNamespace(
        model=gen, backend=backend_of(backend), config=SimpleNamespace(dataset="mnist", seed=0),
        data=SimpleNamespace(image_shape=(28, 28)),
    )  # fmt: skip
    paths = INFOGAN.traversals(run, tmp_path)
    assert [p.name for p in paths] == ["traversals_c_cat0.png", "traversals_c_cont0.png"]
    for path, columns in zip(paths, (4, 10), strict=True):
        height, width = imread(path).shape[:2]  # 3x upscaled tiles of 28 + 1 pixel
        assert (height, width) == (3 * (8 * 29 + 1), 3 * (columns * 29 + 1))
    values, grid = traversal_codes(gen.codes, "c_cont0", 8, np.random.default_rng(0))
    assert np.array_equal(values, np.linspace(-2, 2, 10))
    assert np.all(grid["c_cat0"] == grid["c_cat0"][:, :1]) and grid["c_cat0"].shape == (8, 10)
    z = np.random.default_rng(1).normal(size=(8, 1, 3))  # one z per row, broadcast along it
    x = run.backend.inference.compute(gen.generate, z, **grid)
    assert x.shape == (8, 10, 784) and not np.allclose(x[:, 0], x[:, -1])
    held = dict(grid, c_cont0=np.repeat(grid["c_cont0"][:, :1], 10, axis=1))
    x = run.backend.inference.compute(gen.generate, z, **held)
    np.testing.assert_allclose(x, np.repeat(x[:, :1], 10, axis=1), rtol=1e-6)
