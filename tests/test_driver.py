"""The backend-free driver and checkpoints, with a tiny numpy trainer standing in for a backend."""

import json
from typing import NamedTuple

import numpy as np
import pytest

from ppgen.checkpoint import load_checkpoint, save_checkpoint
from ppgen.driver import fit, read_metrics
from ppgen.errors import CheckpointError, ConfigError, DivergenceError


class State(NamedTuple):
    w: np.ndarray
    m: np.ndarray  # momentum: optimizer state that must survive a resume


class NoisySGD:
    """Least squares by momentum SGD on shuffled minibatches with seeded gradient noise."""

    def __init__(self, dim=3, lr=0.05, blow_up_at=None):
        self.dim, self.lr, self.blow_up_at = dim, lr, blow_up_at

    def init(self, seed, x_example):
        rng = np.random.default_rng(seed)
        self.seed = seed
        return State(rng.normal(size=self.dim), np.zeros(self.dim))

    def _loss(self, w, x):
        return float(np.mean((x[:, :-1] @ w - x[:, -1]) ** 2))

    def train_epoch(self, state, x, epoch):
        rng = np.random.default_rng([self.seed, epoch])
        w, m = state
        for idx in rng.permutation(len(x)).reshape(-1, 10):
            b = x[idx]
            g = 2 * b[:, :-1].T @ (b[:, :-1] @ w - b[:, -1]) / len(b) + 0.01 * rng.normal(
                size=w.shape
            )
            m = 0.9 * m + g
            w = w - self.lr * m
        loss = np.nan if epoch == self.blow_up_at else self._loss(w, x)
        return State(w, m), {"loss": loss}

    def evaluate(self, state, x):
        return {"elbo": -self._loss(state.w, x)}

    def state_arrays(self, state):
        return {"w": state.w, "m": state.m}, {"dim": self.dim}

    def load_state_arrays(self, state, arrays, meta):
        if meta != {"dim": self.dim} or set(arrays) != {"w", "m"}:
            raise CheckpointError("checkpoint is from another model")
        return State(arrays["w"], arrays["m"])


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=200)
    d = np.column_stack([x, y])
    return d[:150], d[150:]


def test_resume_equals_uninterrupted(tmp_path, data):
    train, valid = data
    full = fit(NoisySGD(), train, valid, run_dir=tmp_path / "a", epochs=6, seed=3, progress=False)
    fit(NoisySGD(), train, valid, run_dir=tmp_path / "b", epochs=2, seed=3, progress=False)
    # Simulate a crash after the 2nd epoch's metrics were written but before its checkpoint:
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "loss": 0.0}) + "\n")
    resumed = fit(
        NoisySGD(),
        train,
        valid,
        run_dir=tmp_path / "b",
        epochs=6,
        seed=3,
        resume=True,
        progress=False,
    )
    np.testing.assert_array_equal(full.state.w, resumed.state.w)
    np.testing.assert_array_equal(full.state.m, resumed.state.m)
    assert [r["epoch"] for r in read_metrics(tmp_path / "b")] == list(range(6))


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data):
    train, valid = data
    with pytest.raises(DivergenceError, match="epoch 4"):
        fit(NoisySGD(blow_up_at=3), train, valid, run_dir=tmp_path, epochs=6, progress=False)
    arrays, meta = load_checkpoint(tmp_path)
    assert meta["epoch"] == 2 and np.all(np.isfinite(arrays["w"]))


def test_early_stopping_and_best_pointer(tmp_path, data):
    train, valid = data
    # A large learning rate makes validation loss stop improving quickly.
    res = fit(
        NoisySGD(lr=0.2), train, valid, run_dir=tmp_path, epochs=50, patience=2, progress=False
    )
    assert res.stopped_early and len(res.history) < 50
    _, best = load_checkpoint(tmp_path, "BEST")
    assert best["epoch"] == res.best_epoch
    losses = [r["valid_loss"] for r in res.history]
    assert losses[res.best_epoch] == min(losses)


def test_fresh_run_refuses_existing_dir_and_resume_needs_checkpoint(tmp_path, data):
    train, valid = data
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit(NoisySGD(), train, valid, run_dir=tmp_path, epochs=1, resume=True, progress=False)
    fit(NoisySGD(), train, valid, run_dir=tmp_path, epochs=1, progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        fit(NoisySGD(), train, valid, run_dir=tmp_path, epochs=1, progress=False)
    with pytest.raises(CheckpointError, match="another model"):
        fit(NoisySGD(dim=4), train, valid, run_dir=tmp_path, epochs=2, resume=True, progress=False)
    with pytest.raises(ConfigError):
        fit(NoisySGD(), train, valid, run_dir=tmp_path / "x", epochs=0, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage_json", "foreign_json", "missing"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, damage):
    arrays = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "rng": np.arange(4, dtype=np.uint8),
        "step": np.array(7, dtype=np.int32),  # 0-d arrays stay 0-d
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    }
    path = save_checkpoint(tmp_path, arrays, {"epoch": 0}, tag="epoch-000001")
    got, meta = load_checkpoint(tmp_path)
    assert meta["epoch"] == 0
    for k, v in arrays.items():
        np.testing.assert_array_equal(got[k], v)
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
    if damage == "truncate":
        blob = (path / "state.safetensors").read_bytes()
        (path / "state.safetensors").write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage_json":
        (path / "state.json").write_text("{not json")
    elif damage == "foreign_json":
        (path / "state.json").write_text(json.dumps({"format": "something-else"}))
    else:
        (path / "state.safetensors").unlink()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)


def test_old_checkpoints_are_pruned_but_pointed_ones_kept(tmp_path):
    a = {"w": np.zeros(2)}
    save_checkpoint(tmp_path, a, {}, tag="epoch-000001", pointers=("LATEST", "BEST"))
    for e in range(2, 6):
        save_checkpoint(tmp_path, a, {}, tag=f"epoch-{e:06d}")
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["epoch-000001", "epoch-000004", "epoch-000005"]
    assert not any(p.name.startswith(".") for p in (tmp_path / "checkpoints").iterdir())
