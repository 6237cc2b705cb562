"""A new model family plugs in as a recipe, with no edit to any ppgen file.

The family below lives only in this test: a diagonal Gaussian density model with an exact
likelihood (an empty guide, so the ELBO is ``log p(x)``), written for both backends,
declared with its own options, data, evaluation (the exact test NLL, not importance
sampling), samples and pictures, registered, and driven through the command line.
"""

import dataclasses
import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import pytest
import torch
from numpyro.distributions import constraints as nconstraints
from torch.distributions import constraints as tconstraints

from ppgen import plots, runs
from ppgen.cli import build_parser, main
from ppgen.errors import ConfigError
from ppgen.recipes import RECIPES, Built, FitData, Options, Recipe, option, register
from ppgen.recipes.base import image_splits, positive, trainer_settings


class PyroGaussian:
    """x ~ N(mu, diag(sigma^2)) per example, in Pyro; no latent, so the guide is empty."""

    def __init__(self, dim, init_scale):
        self.dim, self.init_scale = dim, init_scale
        pyro.clear_param_store()  # pyro.param sites live in the global store

    def model(self, x, num_data=None):
        mu = pyro.param("mu", torch.zeros(self.dim))
        sigma = pyro.param(
            "sigma", torch.full((self.dim,), self.init_scale), constraint=tconstraints.positive
        )
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            pyro.sample("x", pdist.Normal(mu, sigma).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        pass

    def bind(self, params):
        self.params = {k: v.detach().numpy() for k, v in params.items()}
        return self


class NumPyroGaussian:
    """The NumPyro twin."""

    def __init__(self, dim, init_scale):
        self.dim, self.init_scale = dim, init_scale

    def model(self, x, num_data=None):
        mu = numpyro.param("mu", jnp.zeros(self.dim))
        sigma = numpyro.param(
            "sigma", jnp.full(self.dim, self.init_scale), constraint=nconstraints.positive
        )
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            numpyro.sample("x", ndist.Normal(mu, sigma).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        pass

    def bind(self, params):
        self.params = {k: np.asarray(v) for k, v in params.items()}
        return self


@dataclasses.dataclass(frozen=True)
class GaussianOptions(Options):
    init_scale: float = option(1.0, "initial standard deviation", parse=positive(float))


def exact_log_px(params, x):
    """log N(x; mu, diag(sigma^2)) per row, in closed form (numpy)."""
    mu, sigma = params["mu"], params["sigma"]
    z = (x - mu) / sigma
    return -0.5 * np.sum(z**2 + 2 * np.log(sigma) + math.log(2 * math.pi), axis=1)


class GaussianRecipe(Recipe):
    name = "toygauss"
    help = "a diagonal Gaussian density (test family)"
    description = help
    options = GaussianOptions
    defaults = {"lr": 0.05}
    datasets = ("digits",)
    eval_report = "the exact test NLL of a diagonal Gaussian"

    def prepare(self, config):
        splits = image_splits(config.dataset, config.train_split, "none", config.seed)
        return FitData(
            train=splits.train.x,
            valid=splits.valid.x,
            test=splits.test.x,
            num_data=len(splits.train),
            image_shape=splits.test.image_shape,
            num_classes=None,
        )

    def build(self, config, data, backend):
        family = {"pyro": PyroGaussian, "numpyro": NumPyroGaussian}[backend.name]
        model = family(data.x_dim, config.options.init_scale)
        objective = backend.inference.ELBO()  # no latent: the ELBO is log p(x) exactly
        trainer = backend.inference.Trainer(
            model.model,
            model.guide,
            objective,
            num_data=data.num_data,
            **trainer_settings(config, data.num_data // config.batch_size),
        )
        return Built(model, objective, trainer)

    def evaluate(self, run, **_):
        log_px = exact_log_px(run.model.params, run.data.test)
        return {"test_nll": float(-log_px.mean()), "exact": True, "epoch": run.epoch + 1}

    def summary(self, out):
        return f"exact test NLL {out['test_nll']:.3f} nats (epoch {out['epoch']})"

    def sample(self, run, n, seed=0):
        rng = np.random.default_rng(seed)
        params = run.model.params
        return params["mu"] + params["sigma"] * rng.normal(size=(n, len(params["mu"])))

    def pictures(self, run, out_dir):
        return [
            plots.save_image_grid(
                np.clip(self.sample(run, 16), 0, 1), out_dir / "samples.png", run.data.image_shape
            )
        ]


@pytest.fixture
def toy():
    recipe = register(GaussianRecipe())
    yield recipe
    del RECIPES[recipe.name]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_a_family_defined_here_trains_evaluates_and_samples_through_the_cli(
    toy, tmp_path, capsys, backend
):
    out = tmp_path / "run"
    args = ["train", "toygauss", "--backend", backend, "--dataset", "digits", "--epochs", "4"]
    assert main([*args, "--batch-size", "50", "--init-scale", "0.5", "--out", out, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "trained toygauss" in printed and (out / "samples.png").stat().st_size > 0

    config = runs.load_config(out)
    assert config.model == "toygauss" and config.options == GaussianOptions(init_scale=0.5)
    assert config.lr == 0.05  # the recipe's default of a shared setting

    assert main(["eval", out, "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert lines[0].startswith("exact test NLL") and result["exact"] and result["epoch"] == 4
    # The recipe's evaluation is the exact NLL of the trained parameters, and training
    # improved it from the initial N(0, 0.5^2).
    run = runs.load_trained(out)
    np.testing.assert_allclose(
        result["test_nll"], -exact_log_px(run.model.params, run.data.test).mean(), rtol=1e-6
    )
    start = {"mu": np.zeros(64), "sigma": np.full(64, 0.5)}
    assert result["test_nll"] < -exact_log_px(start, run.data.test).mean() - 1.0
    # The trainer's bound (no latent: the ELBO) is that same log-likelihood.
    elbo = run.trainer.evaluate(run.state, run.data.test)["elbo"]
    assert elbo == pytest.approx(-result["test_nll"], rel=1e-4)

    assert main(["sample", out, "-n", "4", "--seed", "1"]) == 0
    assert (out / "samples.png").stat().st_size > 0
    np.testing.assert_array_equal(runs.sample(run, 3, seed=1), runs.sample(run, 3, seed=1))


def test_the_family_has_its_own_help_and_checks(toy, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "toygauss", "--help"])
    text = capsys.readouterr().out
    assert "--init-scale" in text and "--labels" not in text and "--latent" not in text
    with pytest.raises(SystemExit):
        main(["train", "toygauss", "--dataset", "mnist", "--out", "x"])
    assert "invalid choice: 'mnist'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="toygauss takes no setting"):
        runs.make_config("toygauss", latent=3)
    assert runs.make_config("toygauss", dataset="digits").options.init_scale == 1.0


@pytest.mark.parametrize(
    "model, options, loop",
    [
        ("vae", {}, "scan"),
        ("flow", {"flow": "maf", "dataset": "moons"}, "scan"),
        ("flow", {"flow": "realnvp", "dataset": "moons"}, "scan"),
        ("flow", {"flow": "realnvp", "dataset": "digits"}, "steps"),
        ("flow", {"flow": "glow", "dataset": "digits"}, "steps"),
        ("pixelcnn", {"dataset": "digits"}, "steps"),
        ("wavenet", {}, "steps"),
        ("charrnn", {}, "scan"),
    ],
)
def test_convolutional_families_train_a_jitted_step_per_batch(model, options, loop):
    """Recipe.epoch_loop reaches the trainer: "steps" where the networks are convolutional
    (XLA on CPU runs convolutions far slower inside a scan), "scan" elsewhere."""
    config = runs.make_config(model, **options)
    assert config.recipe.epoch_loop(config) == loop
    assert trainer_settings(config, 10)["epoch_loop"] == loop


def test_weight_decay_reaches_the_optimiser_and_is_checked():
    """``--weight-decay`` (RunConfig.weight_decay) is one of the shared settings every
    family's trainer takes, lands in its optimiser group, and a negative value is refused."""
    config = runs.make_config("made", weight_decay=0.01)
    settings = trainer_settings(config, 10)
    assert settings["weight_decay"] == 0.01
    from ppgen.inference.numpyro import Trainer

    trainer = Trainer(lambda x: None, lambda x: None, lambda *a, **k: 0.0, **settings)
    assert trainer.groups[0].weight_decay == 0.01
    assert runs.make_config("made").weight_decay == 0.0
    with pytest.raises(ConfigError, match="weight_decay must be a number >= 0"):
        runs.make_config("made", weight_decay=-1.0)
    from ppgen.inference.optim import Group

    with pytest.raises(ConfigError, match="group 'loss': weight_decay must be a number >= 0"):
        Group(weight_decay=float("nan"))
    args = build_parser().parse_args(["train", "made", "--weight-decay", "0.001", "--out", "r"])
    assert args.weight_decay == 0.001


def test_eval_help_says_what_each_family_reports(toy, capsys):
    """``ppgen eval --help`` is written from the recipes (``Recipe.eval_report``,
    ``eval_flags``): a family defined here is described as every registered one is, flows
    with their test NLL in nats and bits/dim, and cli.py names no family."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "toygauss: the exact test NLL of a diagonal Gaussian" in text
    assert "flow: the exact test NLL in nats per example, and in bits/dim for images" in text
    assert "--k applies to vae, hvae" in text
    for recipe in RECIPES.values():
        assert recipe.eval_report and recipe.name in text, recipe.name
    from ppgen import cli

    source = Path(cli.__file__).read_text(encoding="utf-8")
    assert not any(f'"{name}"' in source for name in RECIPES), "cli.py names a family"
