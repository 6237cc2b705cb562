"""benchmarks/wavenet.py and benchmarks/ar_sampling.py: the baselines are the add-one counts
they claim, the benchmark's run is the ``wavenet`` recipe's, and the naive sampler's prefix
leaves the number of dimensions it reports."""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_parser_refuses(script, work, argv, message, monkeypatch, capsys):
    """``benchmarks/<script>.py`` with ``argv`` stops with its parser's one-line error (exit
    status 2) containing ``message``, before its first piece of ``work`` (a function of the
    script, made to fail the test if called) runs."""
    module = load(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    monkeypatch.setattr(module, work, lambda *a: pytest.fail(f"{work} ran despite a bad flag"))
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"{script}.py: error: ") and message in err


@pytest.fixture(scope="module")
def wn():
    return load("wavenet")


def test_baselines_are_the_add_one_counts(wn):
    """Bits per sample equal a direct count, one sample at a time (the first sample of every
    test utterance scored by the marginal in the bigram)."""
    rng = np.random.default_rng(0)
    train = [rng.integers(0, 256, n) for n in (300, 50)]
    test = [rng.integers(0, 256, n) for n in (40, 7)]
    every = np.concatenate(train)
    pair = {}
    for x in train:
        for a, b in zip(x[:-1], x[1:], strict=True):
            pair[a, b] = pair.get((a, b), 0) + 1
    after = {a: sum(v for (p, _), v in pair.items() if p == a) for a in range(256)}

    def marginal(b):
        return (np.sum(every == b) + 1) / (len(every) + 256)

    iid = bigram = 0.0
    for x in test:
        bigram -= math.log2(marginal(x[0]))
        for t, b in enumerate(x):
            iid -= math.log2(marginal(b))
            if t:
                bigram -= math.log2((pair.get((x[t - 1], b), 0) + 1) / (after[x[t - 1]] + 256))
    n = sum(len(x) for x in test)
    out = wn.baselines(train, test)
    np.testing.assert_allclose(out["iid_bits_per_sample"], iid / n, rtol=1e-12)
    np.testing.assert_allclose(out["bigram_bits_per_sample"], bigram / n, rtol=1e-12)


def test_the_run_is_the_wavenet_recipe_on_speech(wn):
    args = argparse.Namespace(batch_size=8, lr=1e-3, seed=0, seconds=2.0, max_utterances=0)
    for backend, quick in (("pyro", False), ("numpyro", True)):
        cfg = wn.config(backend, 3, argparse.Namespace(**vars(args), quick=quick))
        assert (cfg.model, cfg.dataset, cfg.backend, cfg.epochs) == (
            "wavenet",
            "speech",
            backend,
            3,
        )
        assert cfg.lr_schedule == "cosine" and cfg.options.picture_seconds == 2.0
        assert cfg.options.layers == (4 if quick else 10) and cfg.lr == 1e-3
    # without --lr, the recipe's rate
    from ppgen.recipes.registry import get_recipe

    unset = argparse.Namespace(**{**vars(args), "lr": None}, quick=False)
    assert wn.config("pyro", 3, unset).lr == get_recipe("wavenet").defaults["lr"] == 1e-2


def test_naive_prefix_leaves_the_steps_it_reports():
    ar = load("ar_sampling")
    x = np.arange(28 * 28).reshape(1, 28, 28)
    prefix, steps = ar.prefix_of("pixelcnn", x, 400)  # whole rows: 15 rows drawn
    assert prefix.shape == (1, 13, 28) and steps == 15 * 28
    audio = np.arange(100)[None]
    prefix, steps = ar.prefix_of("wavenet", audio, 30)
    assert prefix.shape == (1, 70) and steps == 30


def test_ar_mnist_flags_override_one_model_only():
    """``ar_mnist.py --made-agnostic/--made-lr/--made-hidden/--made-binarize`` reach the
    32-set MADE's run and no other model's; left out, every model keeps its table settings
    (MADE: direct connections, the recipe's default); ``--lr`` sets every model's rate but
    the one a model's own flag sets."""
    am = load("ar_mnist")
    args = am.build_parser().parse_args(
        ["--made-agnostic", "order", "--made-lr", "2e-3", "--pixelcnn-channels", "8",
         "--made-hidden", "500", "--made-binarize", "static"]
    )  # fmt: skip
    made = am.config("made", "numpyro", 3, args)
    assert made.options.agnostic == "order" and made.lr == 2e-3
    assert made.options.direct == "output" and made.options.masks == 32
    assert tuple(made.options.hidden) == (500,) and made.options.binarize == "static"
    made1 = am.config("made1", "numpyro", 3, args)
    assert made1.options.masks == 1 and made1.lr == am.DEFAULT_LR == 1e-3
    assert tuple(made1.options.hidden) == (500, 500) and made1.options.binarize == "static"
    assert am.config("nade", "numpyro", 3, args).lr == 3e-3
    assert am.config("pixelcnn", "pyro", 3, args).options.channels == 8
    assert am.config("pixelcnn", "pyro", 3, args).lr == 1e-2 and args.lr is None
    fast = am.build_parser().parse_args(["--pixelcnn-lr", "3e-3"])
    assert am.config("pixelcnn", "pyro", 3, fast).lr == 3e-3
    assert am.config("made1", "numpyro", 3, fast).lr == 1e-3
    plain = am.build_parser().parse_args([])
    default = am.config("made", "numpyro", 3, plain)
    assert (default.options.agnostic, default.options.binarize) == ("connectivity", "dynamic")
    assert tuple(default.options.hidden) == (4000,) and default.lr == 1e-3
    # --lr sets every model's rate; a model's own flag still wins for that model
    every = am.build_parser().parse_args(["--lr", "5e-4", "--pixelcnn-lr", "2e-2"])
    rates = {m: am.config(m, "numpyro", 3, every).lr for m in am.MODELS}
    assert rates == {**{m: 5e-4 for m in am.MODELS}, "pixelcnn": 2e-2}
    with pytest.raises(SystemExit):
        am.build_parser().parse_args(["--made-agnostic", "orders"])
    with pytest.raises(SystemExit):
        am.build_parser().parse_args(["--made-hidden", "500,0"])


def test_ar_mnist_caps_epochs_by_table_and_flag():
    """Each model's planned epochs are capped by ``MAX_EPOCHS`` and ``--max-epochs``, the
    smaller; a model in neither has no cap."""
    am = load("ar_mnist")
    plain = am.build_parser().parse_args([])
    assert am.cap("fvsbn", plain) == 150 and am.cap("pixelcnn", plain) is None
    capped = am.build_parser().parse_args(["--max-epochs", "2"])
    assert am.cap("fvsbn", capped) == 2 and am.cap("pixelcnn", capped) == 2
    loose = am.build_parser().parse_args(["--max-epochs", "500"])
    assert am.cap("made1", loose) == 150 and am.cap("nade", loose) == 500


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--made-lr", "0"], "argument --made-lr: expected a positive value, got '0'"),
        (["--made-lr", "nan"], "argument --made-lr: expected a positive value, got 'nan'"),
        (["--pixelcnn-channels", "0"], "argument --pixelcnn-channels: expected a positive"),
        (["--pixelcnn-layers", "-2"], "argument --pixelcnn-layers: expected a positive"),
        (["--minutes-dense", "inf"], "argument --minutes-dense: expected a positive value"),
        (["--max-epochs", "0"], "argument --max-epochs: expected a positive value"),
        (["--pixelcnn-lr", "-1"], "argument --pixelcnn-lr: expected a positive value"),
        (["--lr", "-1e-3"], "argument --lr: expected a positive value, got '-1e-3'"),
        (["--models", ","], "unknown model(s) ''; choose from fvsbn, nade"),
        (["--models", "nade,nade"], "--models names a model twice (nade,nade); name each once"),
        (["--models", "nade", "--pixelcnn-lr", "1e-2"], "--pixelcnn-lr sets model pixelcnn"),
        (["--models", "fvsbn", "--made-lr", "1e-3"], "--made-lr sets model made, which --models"),
        (["--models", "made1", "--made-agnostic", "connectivity"], "--made-agnostic sets model"),
    ],
)
def test_ar_mnist_refuses_bad_or_idle_flags_before_training(monkeypatch, capsys, argv, message):
    """A bad value, or a flag for a model the run leaves out, stops ``ar_mnist.py`` in one
    line before any model trains (not a traceback half an hour in)."""
    assert_parser_refuses("ar_mnist", "probe", argv, message, monkeypatch, capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--minutes", "0"], "argument --minutes: expected a positive value, got '0'"),
        (["--rounds", "0"], "argument --rounds: expected a positive"),
        (["--threads", "-1"], "argument --threads: expected a positive"),
        (["--max-chars", "-5"], "argument --max-chars:"),
        (["--result", "../charrnn"], "argument --result: '../charrnn' is not a plain name"),
        (["--timing-only", "--minutes", "5"], "--timing-only trains nothing: --minutes would"),
        (["--timing-only", "--out", "x", "--backend", "pyro"], "--backend, --out would do"),
        (["--timing-only", "--max-epochs", "3"], "--max-epochs would do nothing"),
        (["--max-epochs", "0"], "argument --max-epochs: expected a positive"),
        (["--lr", "0"], "argument --lr: expected a positive"),
        (["--lr", "-1e-3"], "argument --lr: expected a positive value, got '-1e-3'"),
    ],
)
def test_charrnn_refuses_bad_flags_before_timing(monkeypatch, capsys, argv, message):
    """``charrnn.py`` stops on a bad value in one line before its timing rounds start."""
    assert_parser_refuses("charrnn", "time_steps", argv, message, monkeypatch, capsys)


def test_charrnn_refuses_rounds_longer_than_the_data(monkeypatch):
    """A timed round of more batches than the (cut) training text holds would time short
    rounds as full ones: refused in one line before any step is timed."""
    cr = load("charrnn")
    argv = ["--timing-only", "--max-chars", "40000", "--round-steps", "10"]
    monkeypatch.setattr(sys, "argv", ["charrnn.py", *argv])
    monkeypatch.setattr(cr, "TorchLoop", lambda *a: pytest.fail("timed despite short data"))
    with pytest.raises(SystemExit) as stop:
        cr.main()
    message = str(stop.value.code)
    assert "needs 640 training windows, the data has 312" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lrs", "0,1e-3"], "argument --lrs: expected positive learning rates, got '0,1e-3'"),
        (["--lrs", "fast"], "argument --lrs: expected comma-separated numbers, got 'fast'"),
        (["--steps", "0"], "argument --steps: expected a positive"),
        (["--result", "../lr"], "argument --result: '../lr' is not a plain name"),
    ],
)
def test_charrnn_lr_refuses_bad_flags_before_training(monkeypatch, capsys, argv, message):
    """``charrnn_lr.py`` stops on a bad value in one line before any rate trains."""
    assert_parser_refuses("charrnn_lr", "train", argv, message, monkeypatch, capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--max-epochs", "0"], "argument --max-epochs: expected a positive"),
        (["--minutes", "-1"], "argument --minutes: expected a positive"),
        (["--minutes", "nan"], "argument --minutes: expected a positive"),
        (["--seconds", "inf"], "argument --seconds: expected a positive"),
        (["--probe-steps", "0"], "argument --probe-steps: expected a positive"),
        (["--batch-size", "0"], "argument --batch-size: expected a positive"),
        (["--seed", "-1"], "argument --seed: "),
        (["--threads", "0"], "argument --threads: expected a positive"),
        (["--max-utterances", "-2"], "argument --max-utterances: "),
        (["--lr", "0"], "argument --lr: expected a positive"),
        (["--lr", "-1e-3"], "argument --lr: expected a positive value, got '-1e-3'"),
        (["--result", "../wn"], "argument --result: '../wn' is not a plain name"),
        (["--quick", "--minutes", "5"], "--quick sets --minutes itself"),
        (["--quick", "--max-ep", "3"], "--quick sets --max-epochs itself"),
        (["--quick", "--out", "x", "--seconds", "1"], "--quick sets --out, --seconds itself"),
    ],
)
def test_wavenet_refuses_bad_flags(wn, monkeypatch, capsys, argv, message):
    """``wavenet.py`` stops on a bad value in one line (exit status 2) while parsing, before
    its probe or training."""
    monkeypatch.setattr(sys, "argv", ["wavenet.py", *argv])
    with pytest.raises(SystemExit) as stop:
        wn.parse_args()
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("wavenet.py: error: ") and message in err


def test_benchmarks_plan_what_fits_up_to_the_cap():
    """The cosine schedule's epochs (wavenet.py, flow_mnist.py, ar_mnist.py, charrnn.py):
    what the probe says fits the budget (at least one), never more than ``--max-epochs``."""
    sys.path.insert(0, str(BENCH))
    import _common as common

    assert common.planned_epochs(150.0, 60.0, None) == 24
    assert common.planned_epochs(150.0, 60.0, 3) == 3
    assert common.planned_epochs(150.0, 60.0, 100) == 24
    assert common.planned_epochs(4000.0, 60.0, None) == 1
    # a budget of centuries plans a finite schedule, not an overflow
    assert common.planned_epochs(1.0, 1.7e308, None) == common.MOST_EPOCHS
    assert common.planned_epochs(1.0, 1.7e308, 5) == 5


def test_benchmarks_replace_only_their_own_runs(tmp_path):
    """``train_fresh`` and ``check_run_dirs`` (every benchmark's ``--out``): a new path, an
    empty directory or an earlier ppgen run may take a fresh run; a file or a directory
    holding anything else is refused in one line and left as it was."""
    sys.path.insert(0, str(BENCH))
    import _common as common

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"format": "ppgen-run-1"}')
    (tmp_path / "empty").mkdir()
    common.check_run_dirs(tmp_path / "new", tmp_path / "empty", run)  # each may take a run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("keep")
    for bad, says in ((mine, "is not a ppgen run directory"), (tmp_path / "file", "is a file")):
        with pytest.raises(SystemExit) as stop:
            common.check_run_dirs(run, bad)
        assert says in str(stop.value.code) and "\n" not in str(stop.value.code)
        with pytest.raises(SystemExit):
            common.train_fresh(None, bad)  # refused before the config is read
    assert (mine / "notes.txt").read_text() == (tmp_path / "file").read_text() == "keep"


def test_wavenet_refuses_a_foreign_out_or_bad_figures_before_the_probe(wn, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    """``wavenet.py --out`` holding a user's file, or a ``--figures`` that cannot be made,
    stops in one line before the probe (not after an hour of training), and keeps the file."""
    monkeypatch.setattr(wn, "seconds_per_epoch", lambda *a: pytest.fail("probed"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    (tmp_path / "file").write_text("keep")
    cases = (
        (["--out", str(mine)], "is not a ppgen run directory"),
        (["--out", str(tmp_path / "new"), "--figures", str(tmp_path / "file" / "x")],
         "--figures"),
    )  # fmt: skip
    for argv, says in cases:
        monkeypatch.setattr(sys, "argv", ["wavenet.py", *argv])
        args = wn.parse_args()
        with pytest.raises(SystemExit) as stop:
            wn.main(args)
        assert says in str(stop.value.code) and "\n" not in str(stop.value.code)
    assert (mine / "notes.txt").read_text() == "keep"


def test_quick_refuses_the_options_it_sets_and_applies_its_own():
    """``--quick`` fixes some options itself: giving one of them too (spelled out, as
    ``--flag=x``, abbreviated, or at its default value) is refused in one line, since the
    value would be ignored; without a clash its settings replace the defaults and every
    other option keeps the command line's value."""
    sys.path.insert(0, str(BENCH))
    from _common import given_options, parse, quick_settings

    def parser():
        p = argparse.ArgumentParser(prog="x")
        p.add_argument("--minutes", type=float, default=60.0)
        p.add_argument("--max-epochs", type=int, default=None)
        p.add_argument("--out", default="runs/x")
        p.add_argument("--lr", type=float, default=1e-3)
        p.add_argument("--quick", action="store_true")
        return p

    settings, replaced = {"minutes": 0.5}, ("max_epochs", "out")
    for argv in (["--minutes", "60"], ["--minutes=2"], ["--min", "2"], ["--max-epochs", "3"],
                 ["--out", "runs/x"]):  # fmt: skip
        p = parser()
        args = parse(p, ["--quick", *argv])
        with pytest.raises(SystemExit) as stop:
            quick_settings(p, args, settings, replaced, argv=["--quick", *argv])
        assert stop.value.code == 2
    p = parser()
    argv = ["--quick", "--lr", "-1e-2"]
    assert given_options(p, argv) == {"quick", "lr"}
    args = parse(p, argv)
    quick_settings(p, args, settings, replaced, argv=argv)
    assert (args.minutes, args.max_epochs, args.out, args.lr) == (0.5, None, "runs/x", -1e-2)


def test_defaults_help_shows_set_defaults_only():
    """The benchmarks' help formatter names every set default, zero included, and leaves out
    the ``None`` and ``False`` ones (their help says what unset means)."""
    sys.path.insert(0, str(BENCH))
    from _common import DefaultsHelp

    p = argparse.ArgumentParser(prog="x", formatter_class=DefaultsHelp)
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--lr", type=float, default=None, help="rate (default: the recipe's)")
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--out", default="runs/x", help="run directory")
    text = " ".join(p.format_help().split())
    assert "seed (default: 0)" in text and "run directory (default: runs/x)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
