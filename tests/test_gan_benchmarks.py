"""benchmarks/gan_mnist.py's bookkeeping: ``--combine`` joins parts run on separate cores
into one table whose summary keys are recomputed from the joined rows, refuses a model and
seed found twice, and every benchmark's ``--result`` is a plain name, never a path."""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str, results: Path, monkeypatch) -> object:
    """``benchmarks/<name>.py`` as a module whose results folder is ``results``."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import _common

    monkeypatch.setattr(_common, "RESULTS", results)
    monkeypatch.setattr(module, "RESULTS", results)
    return module


@pytest.fixture
def gm(tmp_path, monkeypatch):
    return load_benchmark("gan_mnist", tmp_path, monkeypatch)


def row(name: str, seed: int, fid: float) -> dict:
    return {"name": name, "seed": seed, "fid": fid, "kid": fid / 2, "train_minutes": 30.0}


def write(tmp_path: Path, name: str, rows: list[dict], **top) -> None:
    part = {"models": rows, "classifier_accuracy": 0.99, "minutes": 99.0, **top}
    (tmp_path / f"{name}.json").write_text(json.dumps(part))


def test_combine_recomputes_the_summary_from_the_joined_rows(gm, tmp_path, capsys):
    write(tmp_path, "a", [row("hinge", 0, 50.0), row("wgan-gp", 0, 70.0)], channels=[64, 32])
    write(tmp_path, "b", [row("hinge", 1, 54.0), row("hinge", 2, 46.0)])
    write(tmp_path, "c", [row("nonsaturating", 0, 40.0), row("vae", 0, 64.0)])
    # only c's VAE: its GAN (FID 40) must not take part
    gm.combine([("a", None), ("b", None), ("c", ["vae"])], "joined")
    out = json.loads((tmp_path / "joined.json").read_text())
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == out
    assert out["best_adversarial"] == "hinge"  # 50 against WGAN-GP's 70, at the first seed
    assert out["fid_hinge"] == pytest.approx(statistics.mean([50.0, 54.0, 46.0]))
    assert out["kid_hinge"] == pytest.approx(25.0)
    assert "fid_nonsaturating" not in out
    assert out["best_gan_fid_vs_vae"] == pytest.approx(50.0 / 64.0)
    assert out["minutes"] == pytest.approx(5 * 30.0)  # the rows' training, not the files'
    assert out["combined_from"] == ["a", "b", "c:vae"]
    first = next(r for r in out["models"] if r["from"] == "a")
    assert first["settings"]["channels"] == [64, 32]  # the file's settings, on its rows


def test_combine_draws_the_rows_validation_fid_curves(gm, tmp_path):
    curved = [{**row("hinge", 0, 30.0), "valid_by_epoch": [400.0, 90.0, 41.0]}]
    write(tmp_path, "a", curved + [row("hinge", 1, 35.0)])  # seed 1: run before the curves
    write(tmp_path, "b", [{**row("vae", 0, 64.0), "valid_by_epoch": [120.0, 100.0]}])
    gm.combine([("b", None)], "vae_only")  # the VAE's figure is a loss, not a FID: no picture
    assert not (tmp_path / "gan_mnist" / "vae_only_valid_fid.png").exists()
    gm.combine([("a", None), ("b", None)], "joined")
    picture = tmp_path / "gan_mnist" / "joined_valid_fid.png"
    assert picture.stat().st_size > 0
    # rows with no finite figure: the table is still written, and the old picture goes
    write(tmp_path, "c", [{**row("hinge", 0, 30.0), "valid_by_epoch": [None, float("nan")]}])
    gm.combine([("c", None)], "joined")
    assert json.loads((tmp_path / "joined.json").read_text())["fid_hinge"] == 30.0
    assert not picture.exists()


def test_combine_refuses_a_row_found_twice_and_missing_parts(gm, tmp_path):
    write(tmp_path, "a", [row("hinge", 0, 50.0)])
    with pytest.raises(SystemExit, match="hinge seed 0 is in two parts"):
        gm.combine([("a", None), ("a", None)], "joined")
    with pytest.raises(SystemExit, match="cannot read .*nothere.json.*run that part first"):
        gm.combine([("nothere", None)], "joined")
    flowgan_like = {"models": [{"name": "mle", "nll": 1.0}], "classifier_accuracy": 0.99}
    for other in ({"nll": 1.0}, 3, {"models": {"a": 1}, "classifier_accuracy": 0.99},
                  flowgan_like, {"models": [{**row("vae", 0, 1.0), "seed": "0"}],
                                 "classifier_accuracy": 0.99}):  # fmt: skip
        (tmp_path / "other.json").write_text(json.dumps(other))
        with pytest.raises(SystemExit, match="other.json is not a gan_mnist.py result"):
            gm.combine([("other", None)], "joined")
    with pytest.raises(SystemExit, match="a.json has no rows of vae"):
        gm.combine([("a", ["vae"])], "joined")
    assert not (tmp_path / "joined.json").exists()
    with pytest.raises(argparse.ArgumentTypeError, match="unknown model"):
        gm.combine_part("a:vea")
    assert gm.combine_part("a:vae,hinge") == ("a", ["vae", "hinge"])


@pytest.mark.parametrize("name", ["a/b", "../x", "", ".hidden", "x y"])
def test_result_names_are_plain_names(gm, name):
    import _common

    with pytest.raises(argparse.ArgumentTypeError, match="not a plain name"):
        _common.result_name(name)
    assert _common.result_name("gan_mnist_c64-2.v1") == "gan_mnist_c64-2.v1"
    assert _common.result_name("flow_toy_seeds.json") == "flow_toy_seeds"  # not .json.json
    with pytest.raises(argparse.ArgumentTypeError, match="at most 200 characters, got 300"):
        _common.result_name("a" * 300)  # the file system's NAME_MAX, before any training


def test_a_joined_table_keeps_its_rows_sources_and_combine_takes_no_training_flags(
    gm, tmp_path, monkeypatch, capsys
):
    write(tmp_path, "a", [row("hinge", 0, 50.0)])
    write(tmp_path, "b", [row("vae", 0, 64.0)])
    gm.combine([("a", None)], "ab")
    gm.combine([("ab", None), ("b", None)], "joined")
    out = json.loads((tmp_path / "joined.json").read_text())
    assert [r["from"] for r in out["models"]] == ["a", "b"]
    argv = ["gan_mnist.py", "--combine", "a", "--lr", "-1", "--result", "x"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):
        gm.main()
    assert "--combine trains nothing: drop --lr" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--betas", "0.5", "1.0"], "hinge: --beta2 must be in [0, 1), got 1.0"),
        (["--betas", "nan", "0.9"], "hinge: beta1 must be a finite number, got nan"),
        (["--ema", "1.5"], "hinge: --ema must be a decay in [0, 1)"),
        (["--lr-critic", "inf"], "--lr and --lr-critic must be finite"),
        (["--minutes", "0"], "--minutes must be a positive number"),
        (["--epochs", "0"], "hinge: epochs must be a positive integer, got 0"),
        (["--lr-schedule", "linear"], "invalid choice: 'linear'"),
    ],
)
def test_training_flags_are_checked_before_anything_trains(gm, monkeypatch, capsys, flags, message):
    monkeypatch.setattr(sys, "argv", ["gan_mnist.py", "--models", "hinge", *flags])
    monkeypatch.setattr(gm, "run_model", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SystemExit):
        gm.main()
    assert message in capsys.readouterr().err


def test_the_schedule_and_epoch_cap_reach_the_gans_only(gm):
    args = argparse.Namespace(
        architecture="dcgan", channels=None, ema=0.0, lr=4e-4, lr_critic=0.0, betas=None,
        lr_schedule="cosine", epochs=26, backend="numpyro",
    )  # fmt: skip
    config, options, _ = gm.run_config("hinge", 0, args)
    assert (config.lr_schedule, config.epochs, config.lr) == ("cosine", 26, 4e-4)
    assert options["lr_schedule"] == "cosine" and options["epochs"] == 26  # in the row
    config, options, _ = gm.run_config("vae", 0, args)
    assert (config.lr_schedule, config.epochs) == ("constant", 1000)
    assert "lr_schedule" not in options
    args.lr_schedule = "constant"
    config, options, _ = gm.run_config("hinge", 0, args)
    assert (config.lr_schedule, config.epochs) == ("constant", 26) and "epochs" not in options


def test_gan_toy_quick_keeps_the_full_table_and_its_pictures(tmp_path, monkeypatch):
    """``gan_toy.py --quick`` (a check of the script) writes ``gan_toy_quick.json`` and its
    pictures under ``gan_toy_quick/``: the full table ``gan_toy.json`` and the pictures of
    ``gan_toy/`` stay as they were."""
    module = load_benchmark("gan_toy", tmp_path, monkeypatch)
    (tmp_path / "gan_toy").mkdir()
    (tmp_path / "gan_toy.json").write_text("{}")
    (tmp_path / "gan_toy" / "ring8_nonsaturating.png").write_bytes(b"full run")
    argv = ["gan_toy.py", "--quick", "--datasets", "ring8", "--objectives", "nonsaturating",
            "--hidden", "8"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    module.main()
    assert (tmp_path / "gan_toy.json").read_text() == "{}"
    assert (tmp_path / "gan_toy" / "ring8_nonsaturating.png").read_bytes() == b"full run"
    assert json.loads((tmp_path / "gan_toy_quick.json").read_text())["epochs"] == 2
    assert (tmp_path / "gan_toy_quick" / "ring8_nonsaturating.png").stat().st_size > 0
