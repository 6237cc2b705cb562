"""Every bad input of the new-user trial (issue 11, "bad inputs"), kept as a test.

Each goes through the command line (in-process ``ppgen.cli.main``; a subprocess for Ctrl-C
and for two processes) or the API, and must give exactly one line on stderr, no traceback,
exit status 2 (130 on Ctrl-C), and leave the run directory and the user's other files as
they were (every file hashed before and after).

Permissions: where the suite runs as root, ``chmod`` cannot make a path unreadable or
read-only (root passes every permission check), so :func:`denied` then simulates the
operating system's answer instead: the file functions Python reaches (``open``,
``os.open``, ``os.mkdir``, ``os.stat``, ...) raise ``PermissionError`` for paths under the
denied directory. As any other user it uses ``chmod`` itself.
"""

import builtins
import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from ppgen import runs
from ppgen.checkpoint import LOCK_FILE
from tests.cli_helpers import cli, one_line

TINY = ["--dataset", "digits", "--latent", "2", "--hidden", "8", "--batch-size", "50", "--quiet"]
ROOT = os.geteuid() == 0


# -- helpers ---------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too) with its content's hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root) + "/"] = "dir"
        for f in filenames:
            path = os.path.join(dirpath, f)
            out[os.path.relpath(path, root)] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def unchanged(root: Path):
    """Assert that nothing under ``root`` changes inside the block."""
    before = snapshot(root)
    yield
    assert snapshot(root) == before


def _inside(path, root: Path) -> bool:
    if isinstance(path, int):
        return False
    try:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(root)
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def denied(root: Path, monkeypatch, *, read: bool = False):
    """Make ``root`` read-only (or, with ``read``, unreadable) for the block (see the
    module's docstring: ``chmod`` as a normal user, simulated as root)."""
    root = Path(root).absolute()
    if not ROOT:
        root.chmod(0o000 if read else 0o555)
        try:
            yield
        finally:
            root.chmod(0o755)
        return

    def refuse(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def guard(fn, *, is_write):
        def wrapped(path, *args, **kwargs):
            if _inside(path, root) and (read or is_write(args, kwargs)):
                refuse(path)
            return fn(path, *args, **kwargs)

        return wrapped

    def mode_writes(args, kwargs):
        mode = args[0] if args else kwargs.get("mode", "r")
        return isinstance(mode, str) and any(c in mode for c in "wax+")

    def flags_write(args, kwargs):
        flags = args[0] if args else kwargs.get("flags", 0)
        return bool(flags & writes)

    monkeypatch.setattr(builtins, "open", guard(builtins.open, is_write=mode_writes))
    monkeypatch.setattr(io, "open", guard(io.open, is_write=mode_writes))
    monkeypatch.setattr(os, "open", guard(os.open, is_write=flags_write))
    for name in ("mkdir", "unlink", "rmdir", "remove", "chmod"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), is_write=lambda a, k: True))
    for name in ("replace", "rename"):
        fn = getattr(os, name)

        def moved(src, dst, *args, _fn=fn, **kwargs):
            if _inside(src, root) or _inside(dst, root):
                refuse(dst)
            return _fn(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, moved)
    if read:
        for name in ("stat", "scandir", "listdir"):
            monkeypatch.setattr(os, name, guard(getattr(os, name), is_write=lambda a, k: True))
    try:
        yield
    finally:
        monkeypatch.undo()


def trained(tmp_path_factory, name, *args):
    out = tmp_path_factory.mktemp("runs") / name
    code, _, err = cli("train", *args, *TINY, "--epochs", "1", "--out", out)
    assert code == 0, err
    return out


@pytest.fixture(scope="module")
def vae_numpyro(tmp_path_factory):
    return trained(tmp_path_factory, "vae", "vae", "--backend", "numpyro")


@pytest.fixture(scope="module")
def vae_pyro(tmp_path_factory):
    return trained(tmp_path_factory, "vae-pyro", "vae", "--backend", "pyro")


@pytest.fixture(scope="module")
def m1_digits(tmp_path_factory):
    return trained(tmp_path_factory, "m1", "m1", "--labels", "50")


@pytest.fixture
def run(tmp_path, vae_numpyro):
    """A copy of a trained one-epoch VAE run (NumPyro), next to the user's own files."""
    (tmp_path / "notes.txt").write_text("the user's own file\n")
    shutil.copytree(vae_numpyro, tmp_path / "run")
    return tmp_path / "run"


def damage(path: Path, how):
    """Overwrite a JSON file with ``how`` (bytes), or with ``how(its content)``."""
    if isinstance(how, bytes):
        path.write_bytes(how)
    else:
        path.write_text(json.dumps(how(json.loads(path.read_text()))))


def checkpoint(run_dir: Path, pointer="BEST") -> Path:
    root = run_dir / "checkpoints"
    return root / (root / pointer).read_text().strip()


# -- a traceback instead of one line ----------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "vae", "--seed", "-1"], "--seed"),
        (["train", "vae", "--seed", str(2**32)], "below 2**32"),
        (["sample", "RUN", "--seed", "-1"], "--seed"),
        (["train", "vae", "--lr", "-1e-3"], "argument --lr: expected a positive value"),
        (["train", "vae", "--lr", "inf"], "argument --lr: expected a positive value"),
        (["train", "flow", "--flow", "maf", "--bins", "16"], "drop --bins or choose --flow nsf"),
        (["train", "flow", "--bound", "3", "--bins", "4"], "--bins and --bound set the"),
        (
            ["train", "vae", "--weight-decay", "-0.1"],
            "--weight-decay: expected a finite number >= 0",
        ),
        (["train", "made", "--agnostic", "orders"], "argument --agnostic: invalid choice"),
        (["train", "vae", "--latent", "x"], "expected an integer, got 'x'"),
        (["train", "vae", "--lr", "x"], "expected a number, got 'x'"),
        (["train", "m2", "--alpha", "inf"], "argument --alpha: expected a finite number"),
        (["train", "m2", "--full-train"], "unrecognized arguments: --full-train"),
        (["train", "vae", "--objective", "iwae", "--analytic-kl"], "--objective elbo"),
        (["train", "vae", "--flow-layers", "3"], "--flow-layers set the flows of"),
        (["train", "vae", "--flow-hidden", "8"], "choose a flow, or drop them"),
    ],
)
def test_bad_values_are_one_line(tmp_path, args, expected):
    args = [a.replace("RUN", str(tmp_path)) for a in args]
    with unchanged(tmp_path):
        line = one_line(cli(*args, "--out", tmp_path / "out") if args[0] == "train" else cli(*args))
    assert expected in line and "expected one argument" not in line
    assert not (tmp_path / "out").exists()


def test_a_file_where_a_run_directory_is_expected(tmp_path):
    file = tmp_path / "file.txt"
    file.write_text("mine\n")
    with unchanged(tmp_path):
        assert "is a file" in one_line(cli("train", "vae", *TINY, "--out", file))
        assert "not a ppgen run directory (a file)" in one_line(cli("eval", file))
        line = one_line(cli("train", "m1m2", *TINY, "--m1", file, "--out", tmp_path / "o"))
        assert "not a ppgen run directory (a file)" in line


def test_out_in_a_read_only_directory(tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    with unchanged(tmp_path), denied(parent, monkeypatch):
        line = one_line(cli("train", "vae", *TINY, "--epochs", "1", "--out", parent / "run"))
    assert "Permission denied" in line and "permissions" in line


def test_resume_and_sample_in_a_read_only_run_directory(run, monkeypatch):
    with unchanged(run.parent), denied(run, monkeypatch):
        line = one_line(cli("train", "vae", *TINY, "--out", run, "--resume", "--epochs", "2"))
        assert "Permission denied" in line
        assert "Permission denied" in one_line(cli("sample", run, "-n", "4"))


def test_unreadable_and_misplaced_ppgen_data(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    monkeypatch.setenv("PPGEN_DATA", str(data))
    with unchanged(tmp_path), denied(data, monkeypatch, read=True):
        line = one_line(cli("train", "vae", "--dataset", "mnist", "--out", tmp_path / "r"))
    assert "cannot read the MNIST data" in line and "PPGEN_DATA" in line

    file = tmp_path / "data.txt"
    file.write_text("not a directory\n")
    monkeypatch.setenv("PPGEN_DATA", str(file))
    with unchanged(tmp_path):
        line = one_line(cli("train", "vae", "--dataset", "mnist", "--out", tmp_path / "r"))
    assert "PPGEN_DATA names" in line and "is a file, not a directory" in line


def test_a_full_disk_during_a_checkpoint_then_resume_is_exact(tmp_path, monkeypatch):
    args = ["train", "vae", "--backend", "pyro", *TINY, "--seed", "3", "--epochs", "2"]
    config = runs.make_config(
        "vae",
        backend="pyro",
        dataset="digits",
        latent=2,
        hidden=(8,),
        batch_size=50,
        seed=3,
        epochs=2,
    )
    runs.train(config, tmp_path / "whole", progress=False)  # the run, never interrupted

    real_open = builtins.open

    def full_disk(path, mode="r", *a, **k):
        if Path(os.fsdecode(path)).parent.name.startswith(".epoch-000002."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fsdecode(path))
        return real_open(path, mode, *a, **k)

    run_dir = tmp_path / "full"
    monkeypatch.setattr(builtins, "open", full_disk)
    line = one_line(cli(*args, "--out", run_dir))
    monkeypatch.undo()
    assert "No space left on device" in line and "--resume" in line
    assert (run_dir / "checkpoints" / "LATEST").read_text().strip() == "epoch-000001"
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]

    assert cli(*args, "--out", run_dir, "--resume")[0] == 0
    whole, resumed = (
        load_file(str(checkpoint(d, "LATEST") / "state.safetensors"))
        for d in (tmp_path / "whole", run_dir)
    )
    assert set(whole) == set(resumed)
    for key in whole:
        np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)


@pytest.mark.parametrize(
    "how, expected",
    [
        (
            lambda m: {k: v for k, v in m.items() if k != "trainer"},
            "'trainer' entry is missing, not a dict",
        ),
        (lambda m: {**m, "epoch": "two"}, "'epoch' entry is 'two'"),
        (b"\xff\xfe\x00binary", "unreadable or corrupt"),
    ],
)
def test_a_damaged_state_json(run, how, expected):
    for pointer in ("BEST", "LATEST"):
        damage(checkpoint(run, pointer) / "state.json", how)
    with unchanged(run.parent):
        assert expected in one_line(cli("eval", run, "--k", "5"))
        assert expected in one_line(cli("train", "vae", "--out", run, "--resume", "--epochs", "3"))
        assert expected in one_line(cli("sample", run))


def test_a_users_own_config_json_is_not_a_run(tmp_path):
    """A user's directory that happens to hold a config.json of its own: not a run."""
    own = tmp_path / "mine"
    own.mkdir()
    (own / "config.json").write_text("# my settings\n")
    with unchanged(tmp_path):
        assert "is not a ppgen run directory" in one_line(cli("eval", own))


@pytest.mark.parametrize(
    "how, expected",
    [
        (b"\x89PNG\x00\xff", "config.json is corrupt"),
        (lambda c: {**c, "options": {**c["options"], "hidden": "abc"}}, "hidden must be"),
        (lambda c: {**c, "options": {**c["options"], "latent": None}}, "latent must be"),
        (lambda c: {**c, "hidden": "abc"}, "unknown setting(s) hidden"),
        (lambda c: [c], "is not a ppgen run config"),
        (lambda c: {**c, "tensorboard": "yes"}, "tensorboard must be true or false"),
        (lambda c: {**c, "model": ["vae"]}, "does not describe a run"),
        (lambda c: {**c, "options": {**c["options"], "analytic_kl": 1}}, "true or false"),
    ],
)
def test_a_damaged_config_json(run, how, expected):
    damage(run / "config.json", how)
    with unchanged(run.parent):
        assert expected in one_line(cli("eval", run, "--k", "5"))
        assert expected in one_line(cli("train", "vae", "--out", run, "--resume", "--epochs", "3"))


def test_a_damaged_pointer_file(run):
    (run / "checkpoints" / "BEST").write_bytes(b"\xff\x00\x01")
    with unchanged(run.parent):
        line = one_line(cli("eval", run, "--k", "5"))
    assert "BEST is damaged" in line
    named = set(re.findall(r"epoch-\d{6}", line))  # the hint names folders that exist
    assert named and all((run / "checkpoints" / name).is_dir() for name in named)


def test_sample_out_creates_missing_folders_as_train_out_does(run, tmp_path):
    """The writing commands agree on a missing parent folder: ``ppgen train --out
    a/b/run`` creates ``a/b`` (``checkpoint.claim_run_dir``), and so does ``ppgen sample
    --out a/b/x.png`` (every family's writer); neither refuses it."""
    from ppgen.checkpoint import claim_run_dir

    with claim_run_dir(tmp_path / "new" / "deeper" / "run") as made:
        assert made.is_dir()
    target = tmp_path / "other" / "deeper" / "grid.png"
    code, out, err = cli("sample", run, "-n", "4", "--out", target)
    assert code == 0, err
    assert out.strip() == str(target) and target.stat().st_size > 0


def test_sample_out_must_be_a_new_png_file(run):
    (run.parent / "picture.png").write_bytes(b"the user's picture")
    with unchanged(run.parent):
        assert ".png file" in one_line(cli("sample", run, "--out", run.parent / "grid"))
        assert "is a directory" in one_line(cli("sample", run, "--out", run.parent))
        line = one_line(cli("sample", run, "--out", run.parent / "picture.png"))
        assert "does not overwrite" in line
        line = one_line(cli("sample", run, "--out", run.parent / "picture.png" / "x.png"))
        assert "picture.png, is a file, not a directory" in line


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux's sysfs")
def test_an_unwritable_sample_out_is_named_as_given(run):
    """The error names the user's ``--out``, not the temporary file written beside it
    (sysfs refuses new files, to root too)."""
    line = one_line(cli("sample", run, "-n", "4", "--out", "/sys/x.png"))
    assert "/sys/x.png" in line and "/sys/." not in line


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_nan_weights_are_refused_on_load(tmp_path, request, backend):
    run_dir = tmp_path / "run"
    shutil.copytree(request.getfixturevalue(f"vae_{backend}"), run_dir)
    for pointer in ("BEST", "LATEST"):
        blob = checkpoint(run_dir, pointer) / "state.safetensors"
        arrays = load_file(str(blob))
        name = next(k for k in sorted(arrays) if k.startswith("params"))  # "params/", "params["
        arrays[name] = np.full_like(arrays[name], np.nan)
        save_file(arrays, str(blob))
    with unchanged(tmp_path):
        for args in (("eval", run_dir, "--k", "5"), ("sample", run_dir)):
            line = one_line(cli(*args))
            assert "NaN or infinite" in line and name in line
        line = one_line(cli("train", "vae", "--out", run_dir, "--resume", "--epochs", "3"))
        assert "NaN or infinite" in line


def test_evaluation_never_reports_a_non_finite_figure(run, monkeypatch):
    """Finite weights that still give an infinite NLL: refused, not printed as a result."""
    recipe = runs.load_config(run).recipe
    real = type(recipe).evaluate

    def infinite(self, run, **kw):
        return {**real(self, run, **kw), "test_nll": float("inf")}

    monkeypatch.setattr(type(recipe), "evaluate", infinite)
    with unchanged(run.parent):
        line = one_line(cli("eval", run, "--k", "5", "--json"))
    assert "test_nll = inf" in line


# -- a wrong result without a word -------------------------------------------------------------


def test_m1m2_on_an_m1_of_another_dataset(tmp_path, m1_digits):
    out = tmp_path / "m1m2"
    line = one_line(cli("train", "m1m2", "--m1", m1_digits, "--out", out, "--quiet"))
    assert "trained on digits" in line and "--dataset digits" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "args, flag",
    [
        (["vae", "--backend", "pyro"], "--backend"),
        (["vae", "--lr", "0.01"], "--lr"),
        (["vae", "--latent", "3"], "--latent"),
        (["vae", "--dataset", "mnist"], "--dataset"),
        (["vae", "--objective", "iwae"], "--objective"),
        (["vae", "--full-train"], "--full-train"),
        (["vae", "--hidden", "9"], "--hidden"),
    ],
)
def test_resume_refuses_changed_options(run, args, flag):
    with unchanged(run.parent):
        line = one_line(cli("train", *args, "--out", run, "--resume", "--epochs", "2"))
    assert line.startswith(f"ppgen: error: {flag} differs from the run") and "--epochs" in line


def test_resume_takes_the_same_options_and_another_model_is_refused(run):
    with unchanged(run.parent):
        line = one_line(cli("train", "m2", "--out", run, "--resume", "--epochs", "2"))
        assert "holds a vae run" in line and "ppgen train vae" in line
        line = one_line(cli("train", "vae", "--out", run, "--resume"))  # a finished run
        assert "has trained 1 epoch," in line and "--epochs N with N > 1" in line
        line = one_line(cli("train", "vae", "--out", run, "--resume", "--epochs", "1"))
        assert "has trained 1 epoch," in line  # a lower total is refused, not ignored
    # Leftovers of writes a kill -9 interrupted are removed at the next start; nothing else.
    ckpt = run / "checkpoints"
    leftovers = [ckpt / ".epoch-000002.k3j4h5g6", ckpt / ".LATEST.a1b2c3d4"]
    leftovers += [run / ".config.json.x9y8z7w6"]
    leftovers[0].mkdir()
    (leftovers[0] / "state.safetensors").write_bytes(b"\0" * 1000)
    leftovers[1].write_text("epoch-000002\n")
    leftovers[2].write_text("{")
    (run / ".mine").write_text("a hidden file of the user's\n")
    # The settings it was trained with, given again, are accepted.
    code, out, err = cli("train", "vae", *TINY, "--out", run, "--resume", "--epochs", "2")
    assert code == 0, err
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert not any(p.exists() for p in leftovers)
    assert (run / ".mine").read_text() == "a hidden file of the user's\n"


HOLD = textwrap.dedent("""
    import sys
    from ppgen.checkpoint import claim_run_dir
    with claim_run_dir(sys.argv[1], resume=True):
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_two_processes_on_one_run_directory(run):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with unchanged(run.parent):
            line = one_line(cli("train", "vae", *TINY, "--out", run, "--resume", "--epochs", "2"))
        assert "another ppgen process is writing to" in line
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0


def test_eval_names_the_flags_a_family_does_not_use(m1_digits):
    code, out, err = cli("eval", m1_digits, "--limit", "10", "--k", "3", "--json")
    assert code == 0, err
    assert err.strip().splitlines() == [
        "ppgen: note: --k, --limit not used: a m1 run is evaluated by its test classification "
        "error on the whole test set"
    ]
    assert json.loads(out.strip().splitlines()[-1])["n"] == 250  # every test example


# -- files lost -----------------------------------------------------------------------------------


def test_out_on_the_users_own_directory_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("config.json", "metrics.jsonl", "samples.png", "curves.png"):
        (mine / name).write_text(f"the user's {name}\n")
    with unchanged(tmp_path):
        line = one_line(cli("train", "vae", *TINY, "--epochs", "1", "--out", mine))
    assert "is not a ppgen run directory" in line and "config.json" in line


def test_a_fresh_run_into_a_run_without_latest_is_refused(run):
    (run / "checkpoints" / "LATEST").unlink()
    with unchanged(run.parent):
        line = one_line(cli("train", "vae", *TINY, "--epochs", "1", "--out", run))
    assert "no " in line and "LATEST" in line and "will not replace" in line
    (run / "checkpoints" / "LATEST").write_text(checkpoint(run).name + "\n")
    with unchanged(run.parent):
        assert "--resume" in one_line(cli("train", "vae", *TINY, "--epochs", "1", "--out", run))


def test_a_refused_new_run_leaves_an_old_run_without_a_trace(tmp_path):
    old = tmp_path / "old"  # written by ppgen before run directories were locked
    shutil.copytree(Path(__file__).parent / "data" / "runs_v1" / "m2-numpyro", old)
    with unchanged(tmp_path):
        line = one_line(cli("train", "m2", *TINY, "--labels", "50", "--out", old))
    assert "already holds a run" in line and not (old / LOCK_FILE).exists()


def test_the_demo_never_deletes_a_directory_it_did_not_make(tmp_path, run):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "demo", Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    )
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    for out in (mine, run):
        err = io.StringIO()
        with unchanged(tmp_path), contextlib.redirect_stderr(err):
            assert demo.main(["--dataset", "digits", "--minutes", "0.01", "--out", str(out)]) == 2
        assert len(err.getvalue().strip().splitlines()) == 1 and "--out" in err.getvalue()


# -- messages that mislead ----------------------------------------------------------------------


def test_divergence_in_the_first_epoch_promises_no_checkpoint(tmp_path, monkeypatch):
    from ppgen.inference.numpyro import Trainer

    real = Trainer.train_epoch

    def diverge(self, state, data, epoch):
        state, metrics = real(self, state, data, epoch)
        return state, {**metrics, "loss": float("nan")}

    monkeypatch.setattr(Trainer, "train_epoch", diverge)
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "new" / "r"  # the folders it made for the run go with it
    with unchanged(tmp_path):
        line = one_line(cli("train", "vae", *TINY, "--epochs", "2", "--out", out))
    assert "no checkpoint was written" in line and "--lr" in line
    assert "clip" not in line and "epoch 0" not in line


def test_a_numpyro_trainer_refuses_a_state_before_init_and_another_trainers_state():
    import dataclasses

    from ppgen.errors import ConfigError
    from ppgen.inference import optim
    from ppgen.inference.numpyro import Trainer
    from tests import two_player_game as game

    def trainer(**group):
        critic, generator = game.groups(optim)
        pair = (game.numpyro_model, game.numpyro_guide, game.numpyro_game)
        return Trainer(*pair, groups=[critic, dataclasses.replace(generator, **group)],
                       batch_size=40)  # fmt: skip

    x = game.data()
    state = trainer().init(0, x)
    fresh = trainer()
    for call in (lambda: fresh.step(state, x[:40]), lambda: fresh.train_epoch(state, x, 0)):
        with pytest.raises(ConfigError, match="not been initialised: call state = trainer.init"):
            call()
    fresh.init(0, x)
    foreign = state._replace(params={"critic_h": state.params["critic_h"]})
    with pytest.raises(ConfigError, match=r"not this Trainer's: it lacks the parameters \['gen"):
        fresh.step(foreign, x[:40])
    moved, _ = fresh.step(state, x[:40])  # its own state's params: it steps
    assert float(moved.params["generator_g"]) != float(state.params["generator_g"])


def test_internal_names_do_not_reach_the_user(tmp_path):
    with unchanged(tmp_path):
        line = one_line(
            cli("train", "vae", *TINY, "--batch-size", "100000", "--out", tmp_path / "r")
        )
    assert "--batch-size 100000" in line and "num_data" not in line


def test_version():
    code, out, err = cli("--version")
    assert code == 0 and out.strip() == f"ppgen {__import__('ppgen').__version__}"


INTERRUPT = textwrap.dedent("""
    import signal, sys, time
    import ppgen.driver, ppgen.runs
    from ppgen.cli import main

    # A terminal's Ctrl-C always reaches Python's handler; a test runner may start this
    # process with SIGINT ignored (inherited), which would swallow the signal.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt(*args, **kwargs):
        # raise_signal delivers to this (the main) thread: os.kill on the process may land
        # on one of XLA's threads, and the main thread's sleep then runs its full minute.
        signal.raise_signal(signal.SIGINT)
        time.sleep(60)

    ppgen.driver.save_checkpoint = interrupt  # Ctrl-C as the first checkpoint is written
    ppgen.runs.evaluate = interrupt  # Ctrl-C during evaluation
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("command", ["train", "eval"])
def test_ctrl_c(tmp_path, vae_numpyro, command):
    (tmp_path / "notes.txt").write_text("mine\n")
    if command == "train":
        args = ["train", "vae", *TINY, "--epochs", "2", "--out", str(tmp_path / "r")]
    else:
        shutil.copytree(vae_numpyro, tmp_path / "r")
        args = ["eval", str(tmp_path / "r"), "--k", "5"]
    with unchanged(tmp_path):
        proc = subprocess.run(
            [sys.executable, "-c", INTERRUPT, *args], capture_output=True, text=True, timeout=300
        )
    line = one_line((proc.returncode, proc.stdout, proc.stderr), code=130)
    if command == "train":
        assert "before the run's first checkpoint; nothing was saved" in line
    else:
        assert line == "ppgen: interrupted"


# -- untidy ------------------------------------------------------------------------------------


def test_run_files_follow_the_umask(tmp_path):
    umask = 0o002  # neither 0644 nor 0600 files: group-writable
    old = os.umask(umask)
    try:
        assert cli("train", "vae", *TINY, "--epochs", "1", "--out", tmp_path / "r")[0] == 0
    finally:
        os.umask(old)
    run_dir = tmp_path / "r"
    for path in [run_dir / "config.json", run_dir / "metrics.jsonl", *run_dir.glob("*.png")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    for path in (run_dir / "checkpoints").rglob("*"):
        if path.name == LOCK_FILE:
            continue
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_sample_leaves_the_pictures_of_training_alone(run):
    pictures = {p.name: p.read_bytes() for p in run.glob("*.png")}
    assert "prior_samples.png" in pictures and "samples.png" not in pictures
    code, out, err = cli("sample", run, "-n", "4")
    assert code == 0, err
    assert out.strip() == str(run / "samples.png")
    assert {p.name: p.read_bytes() for p in run.glob("*.png") if p.name in pictures} == pictures


# -- README and help -----------------------------------------------------------------------


def test_every_command_and_flag_is_described_with_its_default():
    import argparse

    from ppgen.cli import build_parser

    parser = build_parser()
    for key, leaf in parser.leaves.items():
        assert leaf.description, key
        for action in leaf._actions:  # argparse keeps no public list of a parser's flags
            if isinstance(action, argparse._HelpAction):
                continue
            name = action.option_strings[0] if action.option_strings else action.dest
            assert action.help, (key, name)
            unset = action.default in (None, False) or action.required or not action.option_strings
            assert unset or "default" in action.help, (key, name)
            if action.default is None and action.option_strings and not action.required:
                assert "default" in action.help or "required" in action.help, (key, name)
    train = parser.leaves
    assert "multiple of the number of classes" in _flag_help(train["train", "m2"], "--labels")
    assert "--objective elbo" in _flag_help(train["train", "vae"], "--kl-warmup")
    for model in ("m2", "m1m2"):  # they select on validation: no --full-train to ignore
        assert "--full-train" not in train["train", model].format_help()
    assert "--full-train" in train["train", "vae"].format_help()


def _flag_help(parser, flag):
    return next(a.help for a in parser._actions if flag in a.option_strings)
