"""The likelihood-free recipes (``gan``, ``mmd``, ``sinkhorn``) through the command line: they
train, evaluate (modes covered, high-quality share), sample and draw on both backends; bad
settings are refused in one line. (A two-player run killed with SIGKILL resumes to exactly
the uninterrupted one on both backends: tests/test_two_player.py, through the same driver.)"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ppgen import runs
from ppgen.errors import ConvergenceWarning
from tests.cli_helpers import cli, one_line

HERE = Path(__file__).parent
TINY = ("--hidden", "16,16", "--epochs", "1", "--batch-size", "1000", "--quiet")


@pytest.mark.parametrize(
    ("backend_name", "recipe", "flags"),
    [
        ("pyro", "gan", ("--loss", "wgan-gp", "--n-critic", "2")),
        ("numpyro", "gan", ("--loss", "hinge")),
        ("numpyro", "mmd", ("--kernel", "imq")),
        ("pyro", "sinkhorn", ("--p", "1", "--epsilon", "1")),
    ],
)
def test_recipes_train_evaluate_sample_and_draw(tmp_path, backend_name, recipe, flags):
    out = tmp_path / "run"
    code, _, err = cli(
        "train", recipe, *flags, "--backend", backend_name, "--dataset", "grid25", *TINY,
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    for name in ("samples_2d.png", "curves.png", "samples_over_training.png",
                 "progress/samples_epoch_0001.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"valid_modes", "valid_hq_share"} <= set(record)
    if recipe == "gan":
        assert {"loss_critic", "loss_generator", "lr_critic", "lr_generator"} <= set(record)
    code, stdout, err = cli("eval", out, "--json", "--limit", "500")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["num_modes"] == 25 and result["samples"] == 500
    assert 0 <= result["modes"] <= 25 and 0 <= result["hq_share"] <= 1
    run = runs.load_trained(out)
    x = runs.sample(run, 7, seed=3)
    assert x.shape == (7, 2) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, runs.sample(run, 7, seed=3))
    code, stdout, err = cli("sample", out, "-n", "300")
    assert code == 0, err
    assert (out / "samples.png").stat().st_size > 0


def test_sinkhorns_transport_defaults_to_unbalanced_on_2d_sets():
    """``--rho -1`` (the default) is unbalanced transport (rho 1) on the 2-D mixtures, whose
    minibatches never hold the same count in each mode, and balanced on images; ``--rho 0``
    is balanced; any other value is taken as it is."""
    from ppgen.recipes.registry import get_recipe

    options = get_recipe("sinkhorn").options
    assert options().marginal_penalty("grid25") == 1.0
    assert options().regularisation("grid25") == 0.1
    assert options().marginal_penalty("mnist") is None
    assert options(rho=0.0).marginal_penalty("grid25") is None
    assert options(rho=0.25).marginal_penalty("mnist") == 0.25
    with pytest.raises(Exception, match="--rho must be a finite number > 0, 0"):
        options(rho=-3.0)


def test_an_unconverged_sinkhorn_is_one_warning_line(tmp_path):
    """The command line shows the ConvergenceWarning of a Sinkhorn stopped at
    ``--max-iterations`` as one line, once, and trains on (the figure is approximate)."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", ConvergenceWarning)  # as a user's Python shows it
        code, _, err = cli(
            "train", "sinkhorn", "--backend", "pyro", "--dataset", "grid25", "--epsilon", "0.003",
            "--max-iterations", "3", *TINY, "--out", tmp_path / "run",
        )  # fmt: skip
    assert code == 0, err
    assert err.splitlines() == [
        "ppgen: warning: Sinkhorn did not reach threshold 0.0001 within 3 iterations at "
        "epsilon 0.003: the divergence and its gradient are approximate; raise max_iterations "
        "or epsilon"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("gan", "--n-critic", "0"), "n-critic"),
        (("gan", "--loss", "wgan"), "invalid choice: 'wgan'"),
        (("gan", "--gradient-penalty", "-2"), "--gradient-penalty must be >= 0"),
        (("gan", "--beta1", "1.5"), "--beta1 must be in [0, 1)"),
        (("gan", "--architecture", "dcgan"), "--architecture dcgan draws 28x28 images"),
        (("mmd", "--bandwidths", "1,-2"), "bandwidths"),
        (("sinkhorn", "--epsilon", "-1"), "epsilon"),
        (("sinkhorn", "--p", "3"), "--p must be 1 or 2"),
        (("sinkhorn", "--rho", "-2"), "got '-2' (or -1: the default)"),
        (("sinkhorn", "--rho", "nan"), "--rho: expected a finite number >= 0"),
        (("gan", "--dataset", "moons"), "moons"),
    ],
)
def test_bad_settings_are_one_line(tmp_path, args, message):
    line = one_line(cli("train", *args, "--dataset" if "--dataset" not in args else "--quiet",
                        *(("grid25",) if "--dataset" not in args else ()),
                        "--out", tmp_path / "run"))  # fmt: skip
    assert message in line, line


def test_cgan_trains_on_labelled_images_and_draws_each_class(tmp_path):
    """``cgan`` on MNIST (one short epoch without validation, so no classifier is needed):
    the labels reach the generator, and its picture has one row per class."""
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "cgan", "--architecture", "mlp", "--hidden", "16", "--epochs", "1",
        "--batch-size", "5000", "--full-train", "--backend", "numpyro", "--quiet", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert (out / "class_samples.png").stat().st_size > 0
    run = runs.load_trained(out, data=False)  # sampling needs no data
    x = runs.sample(run, 20, seed=0)
    assert x.shape == (20, 784) and 0 < x.min() and x.max() < 1
    y = np.zeros(4, np.int64)
    draw = run.backend.inference.draw
    same = np.asarray(draw(run.model.sample, 4, seed=2, y=y))
    other = np.asarray(draw(run.model.sample, 4, seed=2, y=y + 7))
    assert not np.allclose(same, other)  # the label changes the image, the noise being equal
    line = one_line(cli("train", "cgan", "--dataset", "grid25", "--out", tmp_path / "bad"))
    assert "grid25" in line


def test_fid_scores_a_run_of_another_family(tmp_path, monkeypatch):
    """``ppgen fid RUN`` on a VAE run: FID, KID and classes with the classifier of the data
    directory (a tiny one here, stored beside a link to the real MNIST files)."""
    import os

    from ppgen.classifier import save_classifier, train_classifier
    from ppgen.data import data_dir

    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist").symlink_to(data_dir() / "mnist")
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 784)).astype(np.float32), np.arange(64) % 10
    tiny = train_classifier(x, y, x, y, width=2, features=8, epochs=1, batch_size=32, seed=0)
    save_classifier(tiny, data / "classifiers")
    monkeypatch.setenv("PPGEN_DATA", os.fspath(data))
    out = tmp_path / "vae"
    code, _, err = cli("train", "vae", "--hidden", "16", "--latent", "2", "--epochs", "1",
                       "--batch-size", "5000", "--full-train", "--quiet", "--out", out)  # fmt: skip
    assert code == 0, err
    code, stdout, err = cli("fid", out, "-n", "300", "--json")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["num_samples"] == 300 and result["fid"] > 0 and 1 <= result["classes"] <= 10
    line = one_line(cli("fid", out, "-n", "8"))
    assert "-n >= 9" in line
