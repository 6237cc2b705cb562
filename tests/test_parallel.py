"""Data-parallel training (tests/parallel_script.py, float64): on 2 processes (Pyro,
torch.distributed with gloo, started by torchrun) and on 2 forced host devices (NumPyro, a
JAX mesh), the parameters after two epochs equal single-device training within 1e-5; a
data-parallel run checkpoints and resumes exactly."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import parallel_script
import pytest
from safetensors.numpy import load_file

SCRIPT = Path(__file__).parent / "parallel_script.py"


CASES = ("vae", "m2")


def _train(backend, root, devices):
    env = dict(os.environ)
    args = [backend, ",".join(CASES), str(root), *map(str, devices)]
    if backend == "pyro" and 2 in devices:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command = [*launcher, "--nproc_per_node=2", str(SCRIPT), *args]
    else:
        command = [sys.executable, str(SCRIPT), *args]
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # NumPyro: 2 devices
    proc = subprocess.run(command, capture_output=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]


def _latest(run_dir):
    ckpt = run_dir / "checkpoints"
    return load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "state.safetensors"))


# One test per backend, not per case: both cases train in the same processes (under xdist a
# shared fixture could run once per worker).
@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_two_devices_train_as_one(tmp_path, float64, backend):
    if backend == "pyro":  # one device in this process (float64, as the script), then a
        # torchrun job of two: a process of its own would only add the imports of torch and jax
        for case in CASES:
            parallel_script.train_case(backend, case, str(tmp_path / case), ["1"])
        _train(backend, tmp_path, [2])
    else:
        _train(backend, tmp_path, [1, 2])
    for case in CASES:
        _check_case(tmp_path / case)


def _check_case(root):
    one, two = _latest(root / "one"), _latest(root / "two")
    assert set(one) == set(two)
    params = [k for k in one if k.startswith("params")]
    assert params and all(one[k].dtype == np.float64 for k in params)
    for key in one:
        # Same batches, same noise, same particles: only the order of float64 sums differs.
        np.testing.assert_allclose(two[key], one[key], rtol=0, atol=1e-5, err_msg=key)
    moved = max(float(np.max(np.abs(one[k]))) for k in params)
    assert moved > 0.1  # the comparison is between trained, non-trivial parameters
    # A data-parallel run resumed from its checkpoint equals the uninterrupted one.
    resumed = _latest(root / "part")
    for key in two:
        np.testing.assert_array_equal(resumed[key], two[key], err_msg=key)
