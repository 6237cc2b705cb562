"""Starting a data-parallel run the way each backend needs it, before the backend loads.

- Pyro runs one process per device under ``torch.distributed``: a command that asks for
  ``N > 1`` devices outside ``torchrun`` starts itself again under ``torchrun
  --nproc_per_node N`` and waits for it.
- NumPyro drives every device from one process; on a CPU, JAX shows one device unless
  ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` is set before it starts, so the
  flag is added here (JAX is not imported yet when the command line calls this).

This is the one place outside the backend packages that knows how the two differ.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence

__all__ = ["is_main_process", "prepare_devices"]

_FORCE = "--xla_force_host_platform_device_count"


def _torchrun(devices: int, argv: Sequence[str]) -> int | None:
    """Run ``ppgen <argv>`` under torchrun with ``devices`` processes (unless this already
    is one of them); returns its exit status, or ``None`` to go on in this process."""
    if devices <= 1 or "WORLD_SIZE" in os.environ:
        return None
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={devices}", "-m", "ppgen", *argv]
    return subprocess.call(command)


def _host_devices(devices: int, argv: Sequence[str]) -> int | None:
    """Ask XLA for ``devices`` host (CPU) devices unless the user's ``XLA_FLAGS`` says how
    many; goes on in this process."""
    flags = os.environ.get("XLA_FLAGS", "")
    if devices > 1 and _FORCE not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_FORCE}={devices}".strip()
    return None


_PREPARE: dict[str, Callable[[int, Sequence[str]], int | None]] = {
    "pyro": _torchrun,
    "numpyro": _host_devices,
}


def prepare_devices(backend: str, devices: int, argv: Sequence[str]) -> int | None:
    """Make ``devices`` devices available to ``backend`` for the command ``ppgen <argv>``.

    Returns:
        The exit status of the processes started for it (Pyro outside torchrun), or
        ``None`` when this process goes on to train.
    """
    return _PREPARE[backend](devices, argv)


def is_main_process() -> bool:
    """Whether this process writes results: rank 0 of a torchrun job, or the only one."""
    return int(os.environ.get("RANK", "0")) == 0
