"""What every benchmark shares: hardware description and the result file convention.

Each benchmark prints one JSON object as its last line and writes the same object to
``benchmarks/results/<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def hardware() -> dict:
    """CPU model, core count, memory and library versions of this machine."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gib"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    for mod in ("torch", "pyro", "jax", "numpyro"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    info.update(accelerators())
    return info


def accelerators() -> dict:
    """The GPUs JAX and torch compute on, if any: ``{"jax_devices": [...], "torch_cuda":
    name}``; empty on a machine without one (JAX's CPU device is not listed)."""
    found: dict = {}
    try:
        import jax

        gpus = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        if gpus:
            found["jax_devices"] = gpus
    except (ImportError, RuntimeError):
        pass
    try:
        import torch

        if torch.cuda.is_available():
            found["torch_cuda"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return found


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def minutes(self) -> float:
        return (time.perf_counter() - self.t0) / 60


class DefaultsHelp(argparse.HelpFormatter):
    """A help formatter that appends ``(default: X)`` to every option with a help text and a
    set default, like ``argparse.ArgumentDefaultsHelpFormatter``, but not to the options whose
    default is ``None`` or ``False`` (their help says what unset means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
        ):
            return text
        return text + " (default: %(default)s)"


def result_name(text: str) -> str:
    """``--result``'s type: a plain file name (letters, digits, ``_``, ``-``, ``.``), never a
    path, since it names ``benchmarks/results/<name>.json`` and the pictures beside it. A
    trailing ``.json`` is dropped (``x.json`` names ``x.json``, not ``x.json.json``)."""
    import re

    text = text.removesuffix(".json")

    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain name (letters, digits, _ - .): --result names "
            "benchmarks/results/<name>.json"
        )
    longest = 200  # leaves room for ".json" and the pictures' "<model>_" within NAME_MAX (255)
    if len(text) > longest:
        raise argparse.ArgumentTypeError(
            f"--result names a file: at most {longest} characters, got {len(text)}"
        )
    return text


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)`` (``sys.argv[1:]`` when ``None``) with a negative number
    read as a flag's value, as ``ppgen``'s command line reads it: ``--lr -1e-3`` is refused
    as a bad rate, not as a missing argument (``ppgen.cli.join_negative_values``)."""
    from ppgen.cli import join_negative_values

    return parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else list(argv)))


def given_options(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> set[str]:
    """The ``dest`` names of the options the command line sets itself (``--flag x``,
    ``--flag=x`` or an abbreviation argparse accepts), whatever the value: a copy of
    ``parser`` parsed with every default suppressed."""
    import copy

    probe = copy.deepcopy(parser)
    probe._defaults.clear()  # argparse keeps no public handle on either
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parse(probe, argv)))


def quick_settings(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    settings: dict,
    replaced: tuple[str, ...] = (),
    argv: list[str] | None = None,
) -> None:
    """Apply ``--quick``'s own ``settings`` (``{dest: value}``) to ``args``, refusing (one
    line, exit 2) a command line that also sets one of them or one of the options ``--quick``
    ``replaced`` by its own choices later (its fixed epochs for ``--minutes``, a scratch
    directory for ``--out``): ``--quick --minutes 5`` would otherwise still train its
    fixed few epochs without a word."""
    clash = sorted(given_options(parser, argv) & (set(settings) | set(replaced)))
    if clash:
        names = ", ".join("--" + dest.replace("_", "-") for dest in clash)
        parser.error(
            f"--quick sets {names} itself (a fixed tiny check of the script); drop "
            f"{'them' if len(clash) > 1 else 'it'} or drop --quick"
        )
    for dest, value in settings.items():
        setattr(args, dest, value)


def write_result(name: str, result: dict) -> None:
    """Write ``result`` to ``benchmarks/results/<name>.json`` and print it as the last line."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, sort_keys=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(text, flush=True)


def probe_seconds_per_epoch(config, steps: int) -> float:
    """Seconds per epoch of the run ``config``, from a timed probe of ``steps`` steps through
    its recipe's own trainer (a first pass compiles; the second is timed)."""
    from ppgen.recipes import backend

    data = config.recipe.prepare(config)
    trainer = config.recipe.build(config, data, backend(config.backend)).trainer
    rows = data.train[: steps * config.batch_size]
    state = trainer.init(config.seed, data.train)
    state, _ = trainer.train_epoch(state, rows, 0)
    t0 = time.perf_counter()
    trainer.train_epoch(state, rows, 1)
    per_step = (time.perf_counter() - t0) / (len(rows) // config.batch_size)
    return per_step * (data.num_data // config.batch_size)


def check_run_dirs(*dirs: Path) -> None:
    """Refuse, in one line (``SystemExit``) and before any training, a run directory a
    benchmark may not train a fresh run into. It may: a new path, an empty directory, or a
    ppgen run directory (an earlier run of a benchmark, which :func:`train_fresh`
    replaces). A file, or a directory holding anything ppgen did not write, is refused and
    never touched."""
    from ppgen.checkpoint import is_run_dir

    for out in dirs:
        if not out.exists() or (out.is_dir() and (is_run_dir(out) or not any(out.iterdir()))):
            continue
        if not out.is_dir():
            raise SystemExit(f"{out} is a file, not a run directory: choose another --out")
        raise SystemExit(
            f"{out} exists and is not a ppgen run directory; a benchmark replaces only its own "
            "earlier runs: choose another --out"
        )


def comma_names(
    parser: argparse.ArgumentParser, flag: str, text: str, allowed: tuple[str, ...], noun: str
) -> list[str]:
    """The names of a comma-separated ``flag`` (``--models fvsbn,nade``), each one of
    ``allowed`` and each given once; otherwise ``parser.error`` (one line, exit status 2)
    naming the unknown (an empty name too) or the repeated ones."""
    names = text.split(",")
    unknown = sorted({n for n in names if n not in allowed})
    if unknown:
        parser.error(
            f"unknown {noun}(s) {', '.join(map(repr, unknown))}; choose from {', '.join(allowed)}"
        )
    if len(set(names)) < len(names):
        parser.error(f"{flag} names a {noun} twice ({text}); name each once")
    return names


def check_writable_dir(path: Path, flag: str) -> None:
    """Create the directory ``path`` names (with its parents) and check that it can be
    written, so that a bad ``flag`` is refused in one line (``SystemExit``) before a long
    run rather than after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SystemExit(f"{flag} {path}: {e.strerror or e}; choose a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise SystemExit(f"{flag} {path}: not writable; choose a writable directory")


def train_fresh(config, out: Path, *, progress: bool = True, time_limit: float | None = None):
    """Train ``config`` through ``ppgen.runs`` into ``out`` and load it back. An earlier
    ppgen run in ``out`` is replaced; anything else there is refused
    (:func:`check_run_dirs`, ``SystemExit``), never deleted.

    Returns:
        ``(FitResult, the trained Run, training minutes)``.
    """
    from ppgen import runs

    check_run_dirs(out)
    if out.exists():
        shutil.rmtree(out)  # a ppgen run directory, or an empty one
    clock = Stopwatch()
    result = runs.train(config, out, progress=progress, time_limit=time_limit)
    minutes = clock.minutes()
    return result, runs.load_trained(out), minutes


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """Add every benchmark's ``--threads N`` (a positive integer, default ``None``), which
    :func:`limit_threads` applies."""
    from ppgen.recipes.base import positive_int

    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch's compute threads, and XLA's when 1 (default: the libraries' own); 1 lets "
        "two benchmarks share two cores",
    )


def limit_threads(threads: int | None) -> None:
    """Give torch and XLA ``threads`` compute threads (``None``: leave the libraries' own
    defaults), so that two benchmarks can share a machine, one core each.

    XLA reads its flags once, when JAX starts: call this before anything imports ``jax``
    (it refuses otherwise, rather than silently leaving XLA multi-threaded). With one thread
    XLA's Eigen pool is switched off (``--xla_cpu_multi_thread_eigen=false
    intra_op_parallelism_threads=1``); with more, XLA keeps its default pool.
    """
    import sys

    if threads is None:
        return
    if threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {threads}")
    if "jax" in sys.modules:
        raise RuntimeError("limit_threads must run before jax is imported")
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            extra = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


MOST_EPOCHS = 1_000_000  # a budget of years on a fast model still plans a finite schedule


def planned_epochs(seconds_per_epoch: float, minutes: float, max_epochs: int | None) -> int:
    """The epochs of a cosine schedule: as many as fit ``minutes`` at the probe's speed (at
    least one, at most ``MOST_EPOCHS``), at most ``max_epochs`` (``None``: no cap)."""
    fits = minutes * 60 / seconds_per_epoch
    epochs = max(1, math.floor(min(fits, MOST_EPOCHS)))
    return epochs if max_epochs is None else min(epochs, max_epochs)
