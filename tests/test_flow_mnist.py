"""benchmarks/flow_mnist.py: its runs are valid ``flow`` recipe runs on MNIST, and a bad
``--flows`` is refused in one line. (``--quick`` trains end to end but takes about a minute,
too long for the suite; run it by hand.)"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from ppgen.recipes.flow import flow_event_shape

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def fm():
    spec = importlib.util.spec_from_file_location("flow_mnist", BENCH / "flow_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("large", [False, True])
def test_every_flow_is_a_flow_recipe_run_on_mnist(fm, large):
    args = argparse.Namespace(
        quick=False, large=large, backend="numpyro", dataset="mnist", batch_size=64, lr=1e-3,
        seed=0, layers=None, hidden=None, conditioner="auto",
    )  # fmt: skip
    shapes = {}
    for flow in fm.FLOWS:
        cfg = fm.config(flow, 3, args)
        assert (cfg.model, cfg.dataset, cfg.epochs) == ("flow", "mnist", 3)
        assert (cfg.train_split, cfg.lr_schedule) == ("train_full", "cosine")
        assert cfg.options.flow == flow
        assert cfg.options.layers == fm.architecture(flow, args)["layers"]
        shapes[flow] = flow_event_shape(flow, "mnist", (28, 28), 784)
    assert shapes == {
        "realnvp": ("realnvp_multiscale", (1, 28, 28)),
        "glow": ("glow", (1, 28, 28)),
        "maf": ("maf", (784,)),
    }
    assert set(fm.PAPER) == set(fm.MINUTES) == set(fm.LR) == set(fm.FLOWS)
    assert max(fm.MINUTES, key=fm.MINUTES.get) == "glow" and fm.MINUTES["glow"] == 60


def test_each_flow_has_its_rate_unless_lr_sets_all(fm):
    """Without ``--lr`` each flow trains at its own checked rate (Glow 1.5e-3); ``--lr`` sets
    every flow's."""
    args = argparse.Namespace(
        quick=False, large=False, backend="pyro", dataset="mnist", batch_size=64, lr=None,
        seed=0, layers=None, hidden=None, conditioner="auto",
    )  # fmt: skip
    assert {f: fm.config(f, 3, args).lr for f in fm.FLOWS} == fm.LR
    assert fm.LR["glow"] == 1.5e-3 and fm.LR["realnvp"] == 1e-3
    args.lr = 5e-4
    assert {fm.config(f, 3, args).lr for f in fm.FLOWS} == {5e-4}


@pytest.mark.parametrize("quick", [False, True])
def test_layers_and_hidden_override_every_flow(fm, quick):
    """``--layers`` and ``--hidden`` replace the table's architecture of every flow in the
    run (the 4 x 64 Glow of RESULTS), under ``--quick`` too, and the tables are left as
    they were."""
    args = argparse.Namespace(
        quick=quick, large=False, backend="pyro", dataset="mnist", batch_size=64, lr=1e-3,
        seed=0, layers=4, hidden=(64,), conditioner="auto",
    )  # fmt: skip
    for flow in fm.FLOWS:
        cfg = fm.config(flow, 3, args)
        assert (cfg.options.layers, tuple(cfg.options.hidden)) == (4, (64,))
    assert fm.ARCHITECTURE["glow"] == {"layers": 3, "hidden": (64,)}
    assert fm.QUICK_ARCHITECTURE == {"layers": 1, "hidden": (8,)}
    args.layers = None
    assert fm.architecture("glow", args)["layers"] == (1 if quick else 3)


def test_conditioner_reaches_the_image_flows_only(fm):
    """``--conditioner`` is each image flow's ``--conditioner`` (auto: Glow's own net for
    glow, the residual net for realnvp) and is not given to MAF, whose conditioners are
    MADEs."""
    args = argparse.Namespace(
        quick=False, large=False, backend="pyro", dataset="mnist", batch_size=64, lr=None,
        seed=0, layers=None, hidden=None, conditioner="resnet",
    )  # fmt: skip
    got = {f: fm.config(f, 3, args).options.conditioner for f in fm.FLOWS}
    assert got == {"realnvp": "resnet", "glow": "resnet", "maf": "auto"}
    assert "conditioner" not in fm.architecture("maf", args)
    args.conditioner = "auto"  # recorded as the net each flow builds
    got = {f: fm.architecture(f, args).get("conditioner") for f in fm.FLOWS}
    assert got == {"realnvp": "resnet", "glow": "glow", "maf": None}


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--layers", "0", "expected a positive value, got '0'"),
        ("--layers", "x", "expected an integer, got 'x'"),
        ("--hidden", "0", "layer sizes must be positive, got '0'"),
        ("--hidden", "-1", "layer sizes must be positive, got '-1'"),
        ("--hidden", "x", "expected comma-separated layer sizes like 200,200, got 'x'"),
        ("--hidden", "64,", "expected comma-separated layer sizes like 200,200, got '64,'"),
        ("--lr", "nan", "expected a positive value, got 'nan'"),
        ("--lr", "-1e-3", "expected a positive value, got '-1e-3'"),
        ("--minutes", "0", "expected a positive value, got '0'"),
        ("--max-epochs", "0", "expected a positive value, got '0'"),
        ("--batch-size", "-64", "expected a positive value, got '-64'"),
        ("--threads", "0", "expected a positive value, got '0'"),
        ("--seed", "-1", "expected a value >= 0, got '-1'"),
    ],
)
def test_bad_flags_are_refused_in_one_line(fm, monkeypatch, capsys, flag, value,
                                                       message):  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["flow_mnist.py", flag, value])
    with pytest.raises(SystemExit) as e:
        fm.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"argument {flag}: {message}"), err


@pytest.mark.parametrize(
    ("flows", "message"),
    [
        ("glow,nope", "unknown flow(s) 'nope'; choose from realnvp, glow, maf"),
        (",", "unknown flow(s) ''; choose from realnvp, glow, maf"),
        ("glow,maf,glow", "--flows names a flow twice (glow,maf,glow); name each once"),
    ],
)
def test_an_unknown_or_repeated_flow_is_refused_in_one_line(fm, monkeypatch, capsys, flows,
                                                            message):  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["flow_mnist.py", "--flows", flows])
    with pytest.raises(SystemExit) as e:
        fm.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(message), err


def test_a_foreign_run_directory_is_refused_before_the_probe(fm, monkeypatch, tmp_path):
    """``--out`` whose ``glow`` folder holds a user's file: one line, before any probe, and
    the file is kept."""
    mine = tmp_path / "glow" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("mine")
    monkeypatch.setattr(fm, "seconds_per_epoch", lambda *a: pytest.fail("probed"))
    monkeypatch.setattr(sys, "argv", ["flow_mnist.py", "--flows", "glow", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as e:
        fm.main()
    assert "is not a ppgen run directory" in str(e.value.code)
    assert "\n" not in str(e.value.code) and mine.read_text() == "mine"
