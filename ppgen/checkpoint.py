"""Atomic checkpoints and the run directory they live in.

A checkpoint is a directory ``<run>/checkpoints/epoch-000012/`` holding ``state.safetensors``
(parameters, optimizer moments, RNG state: every array a trainer's ``state_arrays`` returns)
and ``state.json`` (step, epoch, seed, the driver's bookkeeping). It is written under a
temporary name and renamed into place; then the pointer file ``LATEST`` (or ``BEST``) is
replaced atomically. A crash at any point leaves the previous checkpoint readable, and a
half-written directory is never pointed at; its leftovers are removed when the run
directory is next claimed. Nothing is ever unpickled, and a checkpoint holding NaN or
infinite values is refused on load.

A run directory is written by one process at a time: :func:`claim_run_dir` refuses a
directory that is not a ppgen run (ppgen never writes into the user's own folders), locks
it (``.ppgen.lock``, an advisory ``flock`` released when the process ends, however it
ends), and removes what it created if the command fails before its first checkpoint.
Files are created with the user's usual permissions (the umask), like any other program's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from ppgen.errors import CheckpointError, ConfigError

try:  # POSIX; elsewhere a run directory is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "FORMAT",
    "LOCK_FILE",
    "RUN_META",
    "checkpoint_dir",
    "claim_run_dir",
    "clean_leftovers",
    "has_checkpoint",
    "is_run_dir",
    "load_checkpoint",
    "read_pointer",
    "save_checkpoint",
    "write_atomic",
]

FORMAT = "ppgen-checkpoint-v1"
LOCK_FILE = ".ppgen.lock"
"""The lock file of a run directory (see :func:`claim_run_dir`)."""

RUN_META: Mapping[str, type] = {"seed": int, "epoch": int, "trainer": dict, "driver": dict}
"""The entries (and their types) of the ``state.json`` of a checkpoint the driver wrote."""

_ARRAYS = "state.safetensors"
_META = "state.json"
_POINTER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# Temporary names of interrupted writes: write_atomic's ".NAME.XXXXXXXX" and
# save_checkpoint's ".epoch-NNNNNN.XXXXXXXX" (tempfile's random suffix).
_LEFTOVER_RUN = re.compile(r"\.(config\.json|metrics\.jsonl)\.[A-Za-z0-9_]+")
_LEFTOVER_CKPT = re.compile(r"\.(epoch-\d+|[A-Z]+)\.[A-Za-z0-9_]+")
_HELD: dict[Path, list] = {}  # run directories this process has claimed: [lock file, depth]


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def _usual_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file or directory under the umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` atomically: a temporary file, fsync, then rename. The
    file gets the user's usual permissions (the umask), as ``open`` would give it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _usual_mode())  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    run_dir: str | os.PathLike,
    arrays: dict[str, np.ndarray],
    meta: dict[str, Any],
    *,
    tag: str,
    pointers: tuple[str, ...] = ("LATEST",),
    keep: int = 2,
) -> Path:
    """Write one checkpoint atomically and point ``pointers`` (e.g. LATEST, BEST) at it.

    Args:
        run_dir: The run directory.
        arrays: Named arrays (any dtype safetensors supports); stored bit-exactly.
        meta: JSON-serialisable metadata (the format tag is added).
        tag: Checkpoint name, e.g. ``"epoch-000012"``.
        pointers: Pointer files to update once the checkpoint is complete.
        keep: How many checkpoints to keep besides those a pointer names.

    Returns:
        The checkpoint directory.

    Raises:
        OSError: The disk is full or the directory not writable; the checkpoint's
            temporary files are removed and the previous checkpoints stay as they were.
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / tag
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{tag}."))
    try:
        os.chmod(tmp, _usual_mode(directory=True))  # mkdtemp makes it 0700
        contiguous = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d
        # Serialised here and written by Python, so a full disk is an OSError with its errno.
        _write_bytes(tmp / _ARRAYS, save(contiguous))
        write_atomic(tmp / _META, json.dumps({"format": FORMAT, **meta}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name in pointers:
        write_atomic(root / name, tag + "\n")
    _prune(root, keep)
    return final


def read_pointer(run_dir: str | os.PathLike, pointer: str = "LATEST") -> str | None:
    """The checkpoint name the pointer file ``checkpoints/<pointer>`` holds (``None``: no
    such file).

    Raises:
        CheckpointError: The file does not hold the name of one of the run's checkpoint
            folders (edited or damaged).
    """
    root = checkpoint_dir(run_dir)
    path = root / pointer
    if not path.is_file():
        return None
    raw = path.read_bytes()
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = ""
    if not _POINTER.fullmatch(name) or not (root / name).is_dir():
        shown = repr(name) if name else "no checkpoint name"
        folders = sorted(
            p.name for p in root.iterdir() if p.is_dir() and _POINTER.fullmatch(p.name)
        )
        there = (
            f"write the name of one of them ({', '.join(folders[-3:])}) into it"
            if folders
            else "it has none: train the run again"
        )
        raise CheckpointError(
            f"{path} is damaged: it holds {shown}, not the name of a checkpoint folder in "
            f"{root}; {there}"
        )
    return name


def _prune(root: Path, keep: int) -> None:
    pinned = set()
    for p in root.iterdir():
        if p.is_file() and _POINTER.fullmatch(p.name) and p.name.isupper():
            try:
                pinned.add(read_pointer(root.parent, p.name))
            except CheckpointError:
                return  # a damaged pointer: delete nothing it might have meant
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for tag in tags[:-keep] if keep > 0 else tags:
        if tag not in pinned:
            shutil.rmtree(root / tag, ignore_errors=True)


def has_checkpoint(run_dir: str | os.PathLike, pointer: str = "LATEST") -> bool:
    """Whether ``run_dir`` has a checkpoint named by ``pointer``."""
    return (checkpoint_dir(run_dir) / pointer).is_file()


def _check_meta(meta: Any, path: Path, require: Mapping[str, type]) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ppgen checkpoint (expected format {FORMAT!r})")
    for key, kind in require.items():
        value = meta.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            found = "missing" if key not in meta else f"{value!r}"
            noun = {"int": "an integer", "dict": "a dict", "str": "a string"}.get(
                kind.__name__, f"a {kind.__name__}"
            )
            raise CheckpointError(
                f"{path / _META} is damaged: its {key!r} entry is {found}, not {noun}; the "
                "checkpoint cannot be used"
            )
    return meta


def load_checkpoint(
    run_dir: str | os.PathLike,
    pointer: str = "LATEST",
    *,
    require: Mapping[str, type] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the checkpoint that ``pointer`` names, validating it.

    Args:
        run_dir: The run directory.
        pointer: ``"LATEST"`` or ``"BEST"``.
        require: Entries ``state.json`` must hold, with their types (e.g. :data:`RUN_META`).

    Raises:
        CheckpointError: The run has no such checkpoint; its files are damaged, not a ppgen
            checkpoint, or lack an entry of ``require``; or an array holds NaN or infinite
            values (weights of a diverged run cannot be evaluated or trained on).
    """
    root = checkpoint_dir(run_dir)
    name = read_pointer(run_dir, pointer)
    if name is None:
        raise CheckpointError(
            f"no checkpoint in {run_dir} ({root / pointer} is missing): is this a ppgen run "
            "directory, and did its first epoch finish?"
        )
    path = root / name
    try:
        meta = json.loads((path / _META).read_bytes())
    except (OSError, ValueError) as e:  # ValueError: not JSON, or not UTF-8 text
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({_META}: {e})") from e
    meta = _check_meta(meta, path, require or {})
    try:
        arrays = load_file(str(path / _ARRAYS))
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt ({_ARRAYS}: {e})") from e
    bad = [
        k
        for k, v in arrays.items()
        if np.issubdtype(v.dtype, np.inexact) and not np.isfinite(v).all()
    ]
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds NaN or infinite values (in {', '.join(sorted(bad)[:3])}"
            f"{', ...' if len(bad) > 3 else ''}), which ppgen never saves (a diverging run "
            "stops first): the file is damaged or was replaced; restore it from a copy, or "
            "train the run again"
        )
    return arrays, meta


# -- the run directory ---------------------------------------------------------------------


def is_run_dir(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` is a directory ppgen made: it holds ppgen's lock file, a ppgen
    ``config.json`` or a checkpoint pointer."""
    run_dir = Path(run_dir)
    if (run_dir / LOCK_FILE).is_file() or has_checkpoint(run_dir):
        return True
    try:
        raw = json.loads((run_dir / "config.json").read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and str(raw.get("format", "")).startswith("ppgen-run-")


def clean_leftovers(run_dir: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders of writes that a killed process left in a
    run directory (``checkpoints/.epoch-*``, ``.LATEST.*``, ``.config.json.*``, ...);
    returns what was removed. Only names ppgen's own atomic writes use are touched; call it
    only while holding the directory (:func:`claim_run_dir`)."""
    removed = []
    run_dir = Path(run_dir)
    for folder, pattern in ((run_dir, _LEFTOVER_RUN), (checkpoint_dir(run_dir), _LEFTOVER_CKPT)):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if pattern.fullmatch(p.name):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed.append(p)
    return removed


def _lock(run_dir: Path) -> Any:
    f = open(run_dir / LOCK_FILE, "a")  # noqa: SIM115 (held until the claim ends)
    if fcntl is not None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise CheckpointError(
                f"another ppgen process is writing to {run_dir} (it holds "
                f"{run_dir / LOCK_FILE}); wait for it to finish, or choose another output "
                "directory (--out)"
            ) from None
    return f


@contextlib.contextmanager
def claim_run_dir(run_dir: str | os.PathLike, *, resume: bool = False) -> Iterator[Path]:
    """Hold ``run_dir`` for writing a run into it, for the duration of the ``with`` block.

    A new run goes into a directory that does not exist, an empty one, or a ppgen run
    directory that holds no checkpoint yet (one whose first epoch never finished); a
    resumed run into a ppgen run directory. The directory is locked against other
    processes (a second ``ppgen train`` on it is refused; the lock goes when this process
    ends, even by ``kill -9``), the leftovers of interrupted writes are removed
    (:func:`clean_leftovers`), and if the block fails before the run's first checkpoint,
    what it wrote is removed again (the directory itself if it created it). Claims nest in
    one process (``ppgen.runs.train`` claims, then the driver).

    Raises:
        ConfigError: ``run_dir`` is a file, or a directory that is neither empty nor a
            ppgen run (ppgen never writes into it).
        CheckpointError: Another process holds it; a new run into a directory that holds
            checkpoints; ``resume`` in a directory that is not a run.
        OSError: It cannot be created or written (permissions, a full disk).
    """
    run_dir = Path(run_dir)
    key = run_dir.absolute()
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield run_dir
        finally:
            _HELD[key][1] -= 1
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(
            f"{run_dir} is a file, not a run directory; choose a directory for the run (--out)"
        )
    created = not run_dir.exists()
    if resume and not is_run_dir(run_dir):
        raise CheckpointError(
            f"no checkpoint in {run_dir} to resume: it is not a ppgen run directory; drop "
            "--resume to start a new run there"
        )
    if not created and not is_run_dir(run_dir):
        held = sorted(p.name for p in run_dir.iterdir())
        if held:
            shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
            raise ConfigError(
                f"{run_dir} exists and is not a ppgen run directory (it holds {shown}); "
                "ppgen writes a run only into a new or empty directory: choose another --out"
            )
    root = checkpoint_dir(run_dir)
    if not resume and has_checkpoint(run_dir):
        raise CheckpointError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose "
            "another output directory (--out)"
        )
    if (
        not resume
        and root.is_dir()
        and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())
    ):
        raise CheckpointError(
            f"{run_dir} holds checkpoints but no {root / 'LATEST'} (edited or damaged); "
            "ppgen will not replace them: write the newest checkpoint's folder name into "
            "it and --resume, or choose another output directory (--out)"
        )
    empty = created or not any(run_dir.iterdir())
    made = [p for p in (run_dir, *run_dir.parents) if not p.exists()]  # what mkdir creates

    def remove_made() -> None:  # only empty folders: another process may have written there
        for p in made:
            with contextlib.suppress(OSError):
                p.rmdir()

    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = _lock(run_dir)
    except BaseException:
        remove_made()
        raise
    _HELD[key] = [lock, 1]
    try:
        clean_leftovers(run_dir)
        yield run_dir
    except BaseException:
        if empty and not has_checkpoint(run_dir):  # nothing to resume: leave it as it was
            lock.close()
            del _HELD[key]
            if created:  # made by this claim, and written only under its lock
                shutil.rmtree(run_dir, ignore_errors=True)
                remove_made()
            else:
                for p in run_dir.iterdir():
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()
        raise
    finally:
        if key in _HELD:
            del _HELD[key]
            lock.close()
