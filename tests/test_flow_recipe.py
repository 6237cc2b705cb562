"""The ``flow`` recipe through the command line: train, eval (exact NLL; bits/dim for
images), sample and pictures on both backends, and every bad input as one line."""

import json
import math

import numpy as np
import pytest

from ppgen import runs
from ppgen.data import TOY_DATASETS, TOY_SPLIT_SIZES, load_dataset
from ppgen.errors import ConfigError, DataError
from ppgen.recipes import backend, get_recipe
from tests.cli_helpers import cli, one_line

TINY = ["--layers", "1", "--hidden", "8", "--epochs", "1", "--quiet"]


def exact_test_log_px(run):
    """log p(x) of every test row straight from the trained model."""
    return np.asarray(run.backend.inference.compute(run.model.log_prob, run.data.test))


def test_toy_datasets_are_registered_with_fixed_splits():
    assert set(TOY_DATASETS) == {
        "moons", "8gaussians", "checkerboard", "pinwheel", "spirals", "ring8", "grid25",
    }  # fmt: skip
    for name in TOY_DATASETS:
        test = load_dataset(name, "test")
        assert test.x.shape == (TOY_SPLIT_SIZES["test"], 2) and test.x.dtype == np.float32
        np.testing.assert_array_equal(test.x, load_dataset(name, "test").x)
        full = load_dataset(name, "train_full").x
        np.testing.assert_array_equal(
            full[: TOY_SPLIT_SIZES["train"]], load_dataset(name, "train").x
        )
        assert not np.array_equal(full[:100], test.x[:100])


@pytest.mark.parametrize(("backend_name", "flow"), [("pyro", "nsf"), ("numpyro", "realnvp")])
def test_toy_flow_trains_evaluates_samples_and_draws(tmp_path, backend_name, flow):
    out = tmp_path / "run"
    code, stdout, err = cli(
        "train", "flow", "--backend", backend_name, "--flow", flow, "--dataset", "moons",
        "--batch-size", "5000", *TINY, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    for name in ("density.png", "samples_2d.png", "flow_path.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    code, stdout, err = cli("eval", out, "--json", "--limit", "1000")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    run = runs.load_trained(out)
    exact = exact_test_log_px(run)[:1000]
    np.testing.assert_allclose(result["test_nll"], -exact.mean(), rtol=1e-5)
    assert result["exact"] and result["n"] == 1000
    assert "test_bits_per_dim" not in result  # points, not pixels
    x = runs.sample(run, 5, seed=1)
    assert x.shape == (5, 2)
    np.testing.assert_array_equal(x, runs.sample(run, 5, seed=1))
    # `ppgen sample` on points writes their histogram beside the data's, not an image grid
    code, stdout, err = cli("sample", out, "-n", "500")
    assert code == 0, err
    assert stdout.strip() == str(out / "samples.png")
    from PIL import Image

    with Image.open(out / "samples.png") as image:
        width, height = image.size
    assert width >= 2 * height > 200  # two square panels, not a 1x2-pixel grid


def test_image_flow_reports_bits_per_dim_of_the_8bit_style_data(tmp_path):
    """digits (17 grey levels): NLL = -log p(x + u) + D log 17 per image, bits/dim its
    share per pixel in bits; samples are images in [0, 1]."""
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "flow", "--backend", "pyro", "--flow", "maf", "--dataset", "digits",
        "--batch-size", "500", *TINY, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert (out / "samples.png").exists()
    code, stdout, err = cli("eval", out, "--json")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    run = runs.load_trained(out)
    dim = 64
    # the model's density is over k + u: its -log p is the 17-level data's NLL already
    expected = -exact_test_log_px(run).mean()
    np.testing.assert_allclose(result["test_nll"], expected, rtol=1e-5)
    np.testing.assert_allclose(
        result["test_bits_per_dim"], expected / (dim * math.log(2)), rtol=1e-5
    )  # float32 figures
    # the test images are dequantised once: k + u with k in 0..16 and u in [0, 1)
    k = np.floor(run.data.test)
    assert k.min() >= 0 and k.max() <= 16 and k.max() > 10
    assert not np.array_equal(k, run.data.test)
    x = runs.sample(run, 4)
    assert x.shape == (4, 64) and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("backend_name", ["pyro", "numpyro"])
def test_image_flow_training_loss_is_the_eval_nll(tmp_path, backend_name):
    """The training loss, the validation loss and ``ppgen eval``'s test NLL of an image flow
    are one quantity, the dequantised NLL in nats per image (bits/dim its share per pixel):
    a training step on the test images with their evaluation noise reports the eval figure
    (the training loss was short of the D log L = 181 nats the evaluation adds)."""
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "flow", "--backend", backend_name, "--flow", "maf", "--dataset", "digits",
        "--batch-size", "200", *TINY, "--out", out,
    )  # fmt: skip
    assert code == 0, err
    run = runs.load_trained(out)
    n = 200
    result = runs.evaluate(run, limit=n, batch_size=n, progress=False)
    x = run.data.test[:n]  # k + u, the evaluation's fixed noise
    valid = run.trainer.evaluate(run.state, x)  # the validation loss's figure
    np.testing.assert_allclose(-valid["elbo"], result["test_nll"], rtol=1e-4)
    # the training loss on that batch (last: Pyro's step updates the parameters in place)
    _, metrics = run.trainer.step(run.state, x)
    np.testing.assert_allclose(metrics["loss"], result["test_nll"], rtol=1e-4)
    np.testing.assert_allclose(
        result["test_bits_per_dim"], result["test_nll"] / (64 * math.log(2)), rtol=1e-12
    )
    # the recorded curves are in those units: the one epoch's training loss is near the
    # test figure (the model barely moved), not 181 nats below it
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert abs(record["loss"] - result["test_nll"]) < 0.1 * 64 * math.log(17)
    assert abs(record["valid_loss"] - result["test_nll"]) < 0.1 * 64 * math.log(17)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow", "nope"], "invalid choice: 'nope'"),
        (["--layers", "0"], "a flow needs at least one layer"),
        (["--layers", "-1"], "expected a value >= 0, got '-1'"),
        (["--layers", "two"], "expected an integer, got 'two'"),
        (["--flow", "glow"], "--flow glow is an image flow: it needs image data"),
        (["--flow", "nsf", "--bound", "0"], "--bound must be > 0"),
        (["--flow", "nsf", "--bound", "-2"], "--bound must be > 0"),
        (["--flow", "nsf", "--bound", "nan"], "--bound must be a finite number, got nan"),
        (["--logit-alpha", "inf"], "--logit-alpha must be a finite number, got inf"),
        (["--logit-alpha", "0.1"], "--logit-alpha sets the logit map of image data, and moons"),
        (["--flow", "maf", "--bins", "4"], "--bins sets the rational-quadratic splines"),
        (["--hidden", "0"], "layer sizes must be positive"),
        (
            ["--flow", "planar", "--hidden", "32"],
            "--hidden sets the conditioner networks, and "
            "planar has none (its parameters are bias, u, w); drop --hidden",
        ),
        (["--flow", "radial", "--hidden", "8,8"], "radial has none"),
        (["--dataset", "fashion"], "invalid choice: 'fashion'"),
        (["--conditioner", "mlp"], "invalid choice: 'mlp'"),
        (
            ["--flow", "realnvp", "--conditioner", "glow"],
            "--conditioner sets the conv nets of the image flows (glow, and realnvp on "
            "images), and realnvp on moons has none; drop --conditioner",
        ),
        (["--flow", "planar", "--conditioner", "resnet"], "planar on moons has none"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, message):
    line = one_line(cli("train", "flow", "--dataset", "moons", *args, "--out", tmp_path / "r"))
    assert message in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backend_name", ["pyro", "numpyro"])
def test_bad_data_to_the_recipes_model_is_one_line(backend_name):
    """Data of the wrong dimensionality and NaN in data reach the recipe's trainer as one
    DataError line."""
    recipe = get_recipe("flow")
    config = runs.make_config("flow", backend=backend_name, dataset="moons", layers=1, hidden=(8,))
    data = recipe.prepare(config)
    built = recipe.build(config, data, backend(backend_name))
    wrong = np.zeros((10, 3), dtype=np.float32)
    nan = data.test[:10].copy()
    nan[2, 0] = np.nan
    for bad, message in ((wrong, r"needs \(batch, 2\)"), (nan, "NaN")):
        with pytest.raises(DataError, match=message) as info:
            built.trainer.init(0, bad)
        assert "\n" not in str(info.value)


def test_autoregressive_flows_spread_their_made_degrees_and_old_runs_keep_theirs():
    """MAF's MADEs read every earlier input even when narrower than ``D - 1`` (the cyclic
    degrees runs before 2026-12 used did not); a stored run without ``degrees`` is rebuilt
    with the cyclic ones it was trained with."""
    from ppgen.config import RunConfig, make_config
    from ppgen.models import flows
    from ppgen.models.masks import made_masks

    (layer,) = flows.flow_plan("maf", 30, layers=1, hidden=(8,))
    assert layer.degrees == "spread"
    masks = made_masks(30, layer.hidden, order=layer.order, degrees=layer.degrees)
    reach = masks[0].astype(int)
    for m in masks[1:]:
        reach = (m.astype(int) @ reach > 0).astype(int)
    assert reach[-1].sum() == 29  # the last output reads inputs 1..29
    new = make_config("flow", flow="maf", dataset="moons")
    assert new.options.degrees == "spread"
    raw = json.loads(new.to_json())
    del raw["options"]["degrees"]
    assert RunConfig.from_json(raw).options.degrees == "cyclic"
    with pytest.raises(ConfigError, match="unknown MADE degree scheme"):
        flows.flow_plan("maf", 30, layers=1, hidden=(8,), degrees="even")


@pytest.mark.parametrize("backend_name", ["pyro", "numpyro"])
def test_glow_builds_its_own_conditioner_and_old_runs_keep_the_residual_one(backend_name):
    """``--flow glow`` builds Glow's 3x3 -> 1x1 -> 3x3 conditioners (``GlowNet``) unless
    ``--conditioner resnet``; the multi-scale RealNVP keeps its residual nets; a Glow run
    stored before the setting existed is rebuilt with the residual nets it was trained
    with."""
    from ppgen.config import RunConfig

    recipe = get_recipe("flow")
    side = backend(backend_name).models

    def nets(conditioner, flow="glow"):
        config = runs.make_config(
            "flow", backend=backend_name, dataset="digits", flow=flow, layers=1,
            hidden=(4,), conditioner=conditioner,
        )  # fmt: skip
        data = recipe.shapes(config)
        model, _ = recipe.density(config, data, backend(backend_name))
        weights = model.flow.get_weights()
        kernels = {
            w.shape[-1] for k, w in weights.items() if ".conditioner.convs." in k and w.ndim == 4
        }
        return config, sorted(kernels)

    config, kernels = nets("auto")
    assert kernels == [1, 3]  # GlowNet's 1x1 middle layer
    assert nets("glow")[1] == [1, 3]
    assert nets("resnet")[1] == [3]
    assert nets("auto", flow="realnvp")[1] == [3]
    assert nets("glow", flow="realnvp")[1] == [1, 3]
    raw = json.loads(config.to_json())
    del raw["options"]["conditioner"]
    assert RunConfig.from_json(raw).options.conditioner == "resnet"
    raw["options"]["flow"] = "realnvp"
    assert RunConfig.from_json(raw).options.conditioner == "auto"
    assert side.build_flow("glow", (1, 4, 4), layers=1, hidden=(4,)) is not None
    with pytest.raises(ConfigError, match="maf has none: drop conditioner"):
        side.build_flow("maf", (4,), layers=1, hidden=(4,), conditioner="glow")


def test_conditioner_is_refused_for_a_vector_flow_on_images(tmp_path):
    line = one_line(
        cli(
            "train",
            "flow",
            "--flow",
            "maf",
            "--dataset",
            "digits",
            "--conditioner",
            "glow",
            "--out",
            tmp_path / "r",
        )  # fmt: skip
    )
    assert "maf on digits has none; drop --conditioner" in line, line
    assert not (tmp_path / "r").exists()


def test_a_stored_glow_run_without_conditioner_loads_as_trained(tmp_path):
    """A new Glow run stores the net it built (``auto`` resolved to ``glow``); a Glow run
    stored before the setting existed (trained with the residual nets, its config.json
    without ``conditioner``) evaluates to the same NLL as when it was trained, and
    resumes."""
    glow = tmp_path / "glow"
    code, _, err = cli("train", "flow", "--flow", "glow", "--dataset", "digits", *TINY,
                       "--out", glow)  # fmt: skip
    assert code == 0, err
    assert json.loads((glow / "config.json").read_text())["options"]["conditioner"] == "glow"

    old = tmp_path / "old"
    code, _, err = cli("train", "flow", "--flow", "glow", "--dataset", "digits", *TINY,
                       "--conditioner", "resnet", "--out", old)  # fmt: skip
    assert code == 0, err
    before = runs.evaluate(runs.load_trained(old), limit=50, progress=False)["test_nll"]
    raw = json.loads((old / "config.json").read_text())
    assert raw["options"].pop("conditioner") == "resnet"
    (old / "config.json").write_text(json.dumps(raw))
    run = runs.load_trained(old)
    assert run.config.options.conditioner == "resnet"
    assert runs.evaluate(run, limit=50, progress=False)["test_nll"] == before
    code, _, err = cli("train", "flow", "--resume", "--epochs", "2", "--quiet", "--out", old)
    assert code == 0, err


@pytest.mark.parametrize("layers", ["abc", 2.5, True, -1])
def test_layers_of_another_type_from_a_config_are_refused(layers):
    """``--layers`` read back from an edited ``config.json`` (or given in Python) must be an
    integer: the shared options check, which keys on the flag's parser, refuses the others
    in one line instead of letting ``layers < 1`` raise a TypeError."""
    options = get_recipe("flow").options
    with pytest.raises(ConfigError, match="layers must be an integer >= 0"):
        options(layers=layers)
