"""Atomic checkpoints: arrays in safetensors, everything else in JSON.

A checkpoint is a directory ``<run>/checkpoints/epoch-000012/`` holding ``state.safetensors``
(parameters, optimizer moments, RNG state: every array a trainer's ``state_arrays`` returns)
and ``state.json`` (step, epoch, seed, the driver's bookkeeping). It is written under a
temporary name and renamed into place; then the pointer file ``LATEST`` (or ``BEST``) is
replaced atomically. A crash at any point leaves the previous checkpoint readable, and a
half-written directory is never pointed at. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from ppgen.errors import CheckpointError

__all__ = [
    "FORMAT",
    "write_atomic",
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "checkpoint_dir",
]

FORMAT = "ppgen-checkpoint-v1"
_ARRAYS = "state.safetensors"
_META = "state.json"


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """The folder holding a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` atomically: a temporary file, fsync, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / tag
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{tag}."))
    try:
        contiguous = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d
        save_file(contiguous, str(tmp / _ARRAYS))
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


def _prune(root: Path, keep: int) -> None:
    pinned = {p.read_text().strip() for p in root.iterdir() if p.is_file() and p.name.isupper()}
    tags = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for tag in tags[:-keep] if keep > 0 else tags:
        if tag not in pinned:
            shutil.rmtree(root / tag, ignore_errors=True)


def has_checkpoint(run_dir: str | os.PathLike, pointer: str = "LATEST") -> bool:
    """Whether ``run_dir`` has a checkpoint named by ``pointer``."""
    return (checkpoint_dir(run_dir) / pointer).is_file()


def load_checkpoint(
    run_dir: str | os.PathLike, pointer: str = "LATEST"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read the checkpoint that ``pointer`` names, validating it.

    Raises:
        CheckpointError: The run has no such checkpoint, or its files are corrupt or not
            a ppgen checkpoint.
    """
    root = checkpoint_dir(run_dir)
    pointer_file = root / pointer
    if not pointer_file.is_file():
        raise CheckpointError(
            f"no checkpoint in {run_dir} ({pointer_file} is missing): is this a ppgen run "
            "directory, and did its first epoch finish?"
        )
    path = root / pointer_file.read_text().strip()
    try:
        meta = json.loads((path / _META).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({_META}: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a ppgen checkpoint (expected format {FORMAT!r})")
    try:
        arrays = load_file(str(path / _ARRAYS))
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt ({_ARRAYS}: {e})") from e
    return arrays, meta
