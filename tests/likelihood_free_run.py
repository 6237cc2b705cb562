"""Train a tiny WGAN-GP on ``grid25`` through ``ppgen.runs`` (what test_likelihood_free.py
runs in a subprocess that is killed with SIGKILL after an epoch, then resumed)."""

from __future__ import annotations

import os
import signal
import sys

from ppgen import runs
from ppgen.config import RunConfig
from ppgen.recipes.registry import get_recipe


def main(backend: str, run_dir: str, epochs: int, resume: bool, kill_after: int | None) -> None:
    options = get_recipe("gan").options(loss="wgan-gp", n_critic=2, hidden=(8, 8))
    config = RunConfig(model="gan", backend=backend, dataset="grid25", epochs=epochs,
                       batch_size=2000, seed=4, options=options)  # fmt: skip

    def die(record):
        if kill_after is not None and record["epoch"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    runs.train(config, run_dir, resume=resume, progress=False, on_epoch=die)


if __name__ == "__main__":
    backend, run_dir, epochs, resume, kill_after = sys.argv[1:6]
    main(
        backend, run_dir, int(epochs), resume == "1", None if kill_after == "-" else int(kill_after)
    )
