"""The command line end to end on the bundled digits data: train, eval --json, sample,
resume after kill -9, and one-line errors for bad input."""

import json
import os
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ppgen import runs
from ppgen.cli import main
from ppgen.data import load_dataset
from ppgen.errors import ConfigError
from ppgen.metrics import active_units
from ppgen.recipes.ssvae import stacked_units
from ppgen.recipes.vae import encode_posteriors

TINY = ["--dataset", "digits", "--latent", "4", "--hidden", "32", "--batch-size", "50", "--quiet"]


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_train_eval_sample(tmp_path, capsys, backend):
    out = tmp_path / backend
    objective = ["--objective", "iwae", "--k", "3"] if backend == "pyro" else ["--kl-warmup", "2"]
    code, stdout, err = run_cli(
        ["train", "vae", "--backend", backend, "--epochs", "3", *objective, *TINY, "--out", out],
        capsys,
    )
    assert code == 0, err
    for name in ("prior_samples.png", "reconstructions.png", "curves.png", "config.json"):
        assert (out / name).is_file()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3

    code, stdout, err = run_cli(["eval", out, "--k", "50", "--json"], capsys)
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert {"test_nll", "test_elbo", "k"} <= set(result) and result["k"] == 50
    # log p(x) >= IWAE_k >= ELBO in expectation: the 50-sample estimate beats the ELBO.
    assert result["test_nll"] < -result["test_elbo"]

    code, stdout, err = run_cli(["sample", out, "-n", "9"], capsys)
    assert code == 0, err
    assert stdout.strip().endswith("samples.png") and os.path.getsize(stdout.strip()) > 0


KILLER = textwrap.dedent("""
    import os, signal, sys
    from ppgen import runs
    config = runs.load_config(sys.argv[1])
    def die(record):
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
    runs.train(config, sys.argv[1], progress=False, on_epoch=die)
""")


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, capsys, backend):
    args = ["train", "vae", "--backend", backend, "--epochs", "4", *TINY, "--seed", "7"]
    code, _, err = run_cli([*args, "--out", tmp_path / "whole"], capsys)
    assert code == 0, err

    # Same run, killed with SIGKILL by a separate process after its second epoch.
    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "config.json").write_text((tmp_path / "whole" / "config.json").read_text())
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(killed)], capture_output=True, env=dict(os.environ)
    )
    assert proc.returncode == -9, proc.stderr.decode()
    code, _, err = run_cli([*args, "--out", killed, "--resume"], capsys)
    assert code == 0, err

    def final(run):
        ckpt = run / "checkpoints"
        return load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "state.safetensors"))

    a, b = final(tmp_path / "whole"), final(killed)
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "vae", "--out", "x", "--frobnicate"], "unrecognized arguments"),
        (["train", "vae", "--out", "x", "--hidden", "ten"], "layer sizes"),
        (["train", "vae", "--out", "x", "--k", "0"], "positive"),
        (["train", "vae", "--out", "x", "--backend", "tensorflow"], "invalid choice"),
        (["train", "gam", "--out", "x"], "invalid choice"),
        (["eval"], "required"),
        (["train", "vae", "--out", "x", "--objective", "iwae", "--kl-warmup", "2"], "elbo"),
        (["train", "m1", "--out", "x", "--binarize", "none"], "binary pixels"),
        (["train", "hvae", "--out", "x", "--binarize", "none"], "--binarize dynamic"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, args, expected):
    try:  # argparse exits; ppgen's own checks return the status
        code = main(args)
    except SystemExit as e:
        code = e.code
    line = one_line_error(code, capsys.readouterr().err)
    assert expected in line


def test_missing_mnist_offline_is_one_line_error(tmp_path, capsys, monkeypatch):
    import ppgen.data.mnist as mnist

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(mnist, "_fetch", offline)
    monkeypatch.setenv("PPGEN_DATA", str(tmp_path / "nodata"))
    code, _, err = run_cli(["train", "vae", "--dataset", "mnist", "--out", tmp_path / "r"], capsys)
    line = one_line_error(code, err)
    assert "train-images-idx3-ubyte.gz" in line and "nodata" in line


def test_corrupt_and_foreign_checkpoints_are_one_line_errors(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(
        ["train", "vae", "--backend", "numpyro", "--epochs", "1", *TINY, "--out", run], capsys
    )
    assert code == 0, err
    # Foreign: the config now describes another network than the checkpoint holds.
    config = json.loads((run / "config.json").read_text())
    config["options"]["hidden"] = [16]
    (run / "config.json").write_text(json.dumps(config))
    line = one_line_error(*run_cli(["eval", run, "--k", "5"], capsys)[::2])
    assert "checkpoint" in line.lower()
    # Corrupt: the arrays file is cut in half.
    config["options"]["hidden"] = [32]
    (run / "config.json").write_text(json.dumps(config))
    ckpt = run / "checkpoints"
    blob = ckpt / (ckpt / "BEST").read_text().strip() / "state.safetensors"
    blob.write_bytes(blob.read_bytes()[:100])
    line = one_line_error(*run_cli(["eval", run, "--k", "5"], capsys)[::2])
    assert "corrupt" in line
    # Not a run directory at all.
    line = one_line_error(*run_cli(["sample", tmp_path / "nothing"], capsys)[::2])
    assert "not a ppgen run" in line


def test_pyro_sampling_is_seeded_and_leaves_the_global_rng_alone(tmp_path):
    import torch

    config = runs.make_config(
        "vae", backend="pyro", dataset="digits", latent=4, hidden=(32,), epochs=1, batch_size=50
    )
    runs.train(config, tmp_path, progress=False)
    run = runs.load_trained(tmp_path)
    before = torch.get_rng_state()
    first = runs.sample(run, 5, seed=3)
    np.testing.assert_array_equal(first, runs.sample(run, 5, seed=3))
    assert not np.array_equal(first, runs.sample(run, 5, seed=4))
    assert torch.equal(before, torch.get_rng_state())


# M1+M2's variants: (features, units, worst test error) -- chance is 0.9. On features of a
# 4-epoch M1 the posterior noise is large: M1+M2 learns from the means within 4 epochs, from
# samples (the default) more slowly. This M1's units hover around the activity threshold, so
# the error bounds are checked on all units (the default); M2 on the active units must run
# end to end.
M1M2_VARIANTS = (("mean", "all", 0.8), ("sample", "all", 0.88), ("sample", "active", 1.0))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_semi_supervised_m1_m2_m1m2(tmp_path, capsys, backend):
    """M2, M1 and M1+M2 from the command line: training, test error as JSON, pictures.

    Pyro trains every M1+M2 variant. NumPyro, whose every run pays its XLA compilations,
    trains the default (samples of all units, with its error bound) and checks the other
    two's training features without training them: what differs between the variants is
    which features M2 is given (numpy, shared by the backends, checked here on both) and
    whether the trainer adds M1's posterior noise (the default does); the variants train
    and draw end to end on Pyro, and tests/test_parity.py checks that both backends' SSVAE
    methods and semi-supervised bound agree for the same weights and noise.
    """
    ssl = ["--labels", "50", "--epochs", "4", "--lr", "3e-3", "--backend", backend, *TINY]
    code, stdout, err = run_cli(["train", "m2", *ssl, "--out", tmp_path / "m2"], capsys)
    assert code == 0, err
    assert "validation error" in stdout
    for name in ("class_samples.png", "confusion.png", "curves.png", "analogies.png"):
        assert (tmp_path / "m2" / name).stat().st_size > 0
    code, stdout, err = run_cli(["eval", tmp_path / "m2", "--json"], capsys)
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert 0 <= result["test_error"] < 0.8 and result["labels"] == 50  # chance: 0.9
    assert np.sum(result["confusion"]) == result["n"] == 250

    code, _, err = run_cli(["train", "m1", *ssl, "--out", tmp_path / "m1"], capsys)
    assert code == 0, err
    code, stdout, err = run_cli(["eval", tmp_path / "m1", "--json"], capsys)
    assert code == 0, err
    m1 = json.loads(stdout.strip().splitlines()[-1])
    assert m1["classifier"] in ("logreg", "svm") and 0 <= m1["test_error"] < 0.8

    # M1+M2's training features: M1's posterior means, with its posterior scales as the
    # trainer's input noise by default (z1 ~ q(z1 | x) every step), none with means only;
    # by default only the units active on the training images, else all of them.
    m1_run = runs.load_trained(tmp_path / "m1")
    images = load_dataset("digits", "train").x  # grey values, as M1's features are read
    loc, scale = encode_posteriors(m1_run, images)

    def check_features(data, features, units):
        keep = np.flatnonzero(active_units(loc)) if units == "active" else np.arange(4)
        np.testing.assert_array_equal(data.units, keep)
        np.testing.assert_allclose(data.train[0], loc[:, keep], rtol=1e-5, atol=1e-6)
        assert data.x_dim == len(keep) >= 1
        if features == "sample":
            np.testing.assert_allclose(data.input_scale, scale[:, keep], rtol=1e-5, atol=1e-6)
            assert data.input_scale.shape == data.train[0].shape and data.input_scale.min() > 0
        else:
            assert data.input_scale is None

    for features, units, worst in M1M2_VARIANTS:
        if backend == "numpyro" and (features, units) != ("sample", "all"):
            config = runs.make_config(
                "m1m2", backend=backend, dataset="digits", labels=50, m1_run=str(tmp_path / "m1"),
                m1_features=features, m1_units=units,
            )  # fmt: skip
            check_features(config.recipe.prepare(config), features, units)
            continue
        out = tmp_path / f"m1m2_{features}_{units}"
        m1m2 = ["train", "m1m2", *ssl, "--m1", tmp_path / "m1", "--m1-features", features]
        code, _, err = run_cli([*m1m2, "--m1-units", units, "--out", out], capsys)
        assert code == 0, err
        assert (out / "class_samples.png").stat().st_size > 0
        config = runs.load_config(out)
        assert config.options.m1_features == features and config.options.m1_units == units
        run = runs.load_trained(out)
        check_features(run.data, features, units)  # what recipe.prepare(config) made
        # Class-conditional samples: M2's draws of the kept units, decoded by M1 (with the
        # dropped units at their prior mean).
        samples = run.recipe.class_samples(run, per_class=2)
        assert samples.shape == (20, 64) and np.all((samples >= 0) & (samples <= 1))
        if units == "all" and features == "sample":  # from the command line, as M2's
            code, stdout, err = run_cli(["eval", out, "--json"], capsys)
            assert code == 0, err
            error = json.loads(stdout.strip().splitlines()[-1])["test_error"]
        else:  # what ``ppgen eval --json`` prints, of the run already loaded
            error = runs.evaluate(run)["test_error"]
        assert 0 <= error <= worst


def test_semi_supervised_bad_input_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(
        ["train", "m2", "--labels", "15", *TINY, "--out", tmp_path / "a"], capsys
    )
    assert "multiple of 10" in one_line_error(code, err)
    code, _, err = run_cli(["train", "m1m2", *TINY, "--out", tmp_path / "b"], capsys)
    assert "--m1" in one_line_error(code, err)
    code, _, err = run_cli(
        ["train", "m1m2", *TINY, "--m1", tmp_path / "none", "--out", tmp_path / "c"], capsys
    )
    assert "not a ppgen run directory" in one_line_error(code, err)


V1_M1M2 = Path(__file__).parent / "data" / "runs_v1" / "m1m2-numpyro" / "config.json"


def test_m1m2_configs_from_before_sampling_read_as_means(tmp_path):
    raw = json.loads(V1_M1M2.read_text())  # written by ppgen before recipes (format v1)
    assert raw["format"] == "ppgen-run-v1" and raw["m1_sample"] is True
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert runs.load_config(tmp_path).options.m1_features == "sample"
    del raw["m1_sample"]  # a config written before the option existed trained on means
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert runs.load_config(tmp_path).options.m1_features == "mean"


def test_m1m2_configs_from_before_active_units_read_as_all_units(tmp_path):
    raw = json.loads(V1_M1M2.read_text())
    raw["m1_units"] = "active"
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert runs.load_config(tmp_path).options.m1_units == "active"
    del raw["m1_units"]  # written before the option existed: M2 modelled every unit
    (tmp_path / "config.json").write_text(json.dumps(raw))
    assert runs.load_config(tmp_path).options.m1_units == "all"
    with pytest.raises(ConfigError, match="m1_units"):
        runs.make_config("m1m2", m1_run="runs/m1", m1_units="some")


def test_m1m2_on_an_m1_without_active_units_is_refused():
    # An M1 whose posterior is the prior for every image: every posterior mean is 0.
    means = np.zeros((20, 4), np.float32)
    assert len(stacked_units(means, "all", "m1")) == 4
    with pytest.raises(ConfigError, match="no active latent unit.*--m1-units all"):
        stacked_units(means, "active", "m1")


@pytest.mark.parametrize("model", ["vae", "m2"])
def test_tensorboard_events_of_a_run_read_back(tmp_path, capsys, model):
    """``--tensorboard``: the shared driver writes every epoch's metrics and the recipe's
    pictures as TensorBoard events, read back with TensorBoard's own loader; a resumed run
    logs the epochs it re-runs once."""
    from tensorboard.backend.event_processing import event_accumulator

    out = tmp_path / model
    args = ["train", model, "--backend", "numpyro", *TINY, "--tensorboard", "--out", out]
    extra = ["--labels", "50"] if model == "m2" else []
    assert run_cli([*args, *extra, "--epochs", "2"], capsys)[0] == 0
    assert run_cli([*args, *extra, "--epochs", "3", "--resume"], capsys)[0] == 0

    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert loss == [(r["epoch"] + 1, pytest.approx(r["loss"], rel=1e-6)) for r in records]
    valid = "valid/error" if model == "m2" else "valid/elbo"
    assert [e.step for e in acc.Scalars(valid)] == [1, 2, 3]
    pictures = {"m2": "class_samples", "vae": "prior_samples"}[model]
    assert pictures in acc.Tags()["images"] and "curves" in acc.Tags()["images"]
    assert {e.step for e in acc.Images(pictures)} == {2, 3}  # after each training command


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_devices_from_the_command_line(tmp_path, capsys, backend):
    """``--devices 2``: Pyro starts itself under torchrun, NumPyro asks XLA for two host
    devices; the run trains, records its devices, and evaluates (in this process, as
    evaluation always runs on one device: no second interpreter to import torch and jax)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "WORLD_SIZE")}
    train = [sys.executable, "-m", "ppgen", "train", "vae", "--backend", backend, *TINY]
    proc = subprocess.run(
        [*map(str, train), "--epochs", "2", "--devices", "2", "--out", str(out)],
        capture_output=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().count("trained vae") == 1  # process 0 alone reports
    assert runs.load_config(out).devices == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    code, stdout, err = run_cli(["eval", out, "--k", "5", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["epoch"] == 2
