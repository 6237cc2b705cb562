"""Data-parallel training runs for test_parallel.py, in float64 (run as a script).

    python parallel_script.py BACKEND CASES ROOT DEVICES...

trains, for each CASE of the comma-separated CASES, ``ROOT/CASE/one`` on one device (when
``1`` is among DEVICES) and, on two (when ``2`` is), ``ROOT/CASE/two`` for two epochs and
``ROOT/CASE/part`` for one epoch, resumed to two (one process for every case: the imports
and the process group are paid once). Pyro runs
with devices 2 under ``torchrun --nproc_per_node 2``; NumPyro with two forced host devices
(``XLA_FLAGS``), so one process does everything.

CASE is ``vae`` (an IWAE bound with 2 particles on dynamically binarized images: the
particle plate, the data plate and the per-batch noise all sharded) or ``m2`` (M2 on
partially labelled data: two sharded batches per step and the enumerated label).
"""

from __future__ import annotations

import sys

from ppgen.data import LabelledBatches, load_dataset, partial_labels
from ppgen.driver import fit


def _data(case: str):
    train = load_dataset("digits", "train")
    x = train.x[:400]
    if case == "m2":
        return (x, partial_labels(train.y[:400], 20, seed=0))
    return x


def trainer(backend: str, case: str, devices: int):
    if backend == "pyro":
        import torch

        from ppgen.inference import pyro as inference
        from ppgen.models import pyro as models

        torch.set_default_dtype(torch.float64)
    else:
        import jax

        from ppgen.inference import numpyro as inference
        from ppgen.models import numpyro as models

        jax.config.update("jax_enable_x64", True)
    if case == "m2":
        m = models.SSVAE(64, num_classes=10, latent=3, hidden=(16,), seed=1)
        m = m.double() if backend == "pyro" else m
        objective = inference.SemiSupervisedELBO()
        options = dict(schedule=LabelledBatches(10, labelled_batch_size=10))
    else:
        m = models.VAE(64, latent=3, hidden=(16,), seed=1)
        m = m.double() if backend == "pyro" else m
        objective = inference.IWAE(num_particles=2)
        options = dict(num_data=400, transform=inference.DynamicBinarization())
    return inference.Trainer(
        m.model, m.guide, objective, lr=3e-3, batch_size=20, devices=devices, **options
    )


def main() -> None:
    backend, cases, root, *devices = sys.argv[1:]
    for case in cases.split(","):
        train_case(backend, case, f"{root}/{case}", devices)


def train_case(backend: str, case: str, root: str, devices: list[str]) -> None:
    runs = []
    if "1" in devices:
        runs.append(("one", 1, 2, False))
    if "2" in devices:
        runs += [("two", 2, 2, False), ("part", 2, 1, False), ("part", 2, 2, True)]
    # NumPyro: one trainer per device count, its compiled epoch serving every run (a NumPyro
    # model never changes in training). A Pyro model holds its trained weights: a new one.
    trainers = {}
    for name, n, epochs, resume in runs:
        if backend == "pyro" or n not in trainers:
            trainers[n] = trainer(backend, case, n)
        t = trainers[n]
        fit(t, _data(case), run_dir=f"{root}/{name}", epochs=epochs, seed=3, resume=resume,
            progress=False)  # fmt: skip


if __name__ == "__main__":
    main()
