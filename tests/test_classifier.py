"""The MNIST dataset classifier's machinery on a tiny generated dataset (never real MNIST):
training, input checks, safetensors storage with a SHA-256 sidecar, retraining when missing or
corrupt, never unpickling, and the image metrics built on it."""

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from ppgen import classifier as ppclassifier
from ppgen.classifier import (
    CLASSIFIER_FILE,
    CLASSIFIER_META,
    classifier_dir,
    image_sample_metrics,
    load_classifier,
    read_classifier,
    save_classifier,
    train_classifier,
)
from ppgen.errors import CheckpointError, DataError

TINY = {"width": 2, "features": 8, "epochs": 1, "batch_size": 32}


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten easy classes: class k is a bright 6x6 block at its own place, plus faint noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(10, size=n)
    x = 0.1 * rng.random((n, 28, 28))
    for k in range(10):
        row, col = divmod(k, 5)
        x[y == k, 2 + 12 * row : 8 + 12 * row, 1 + 5 * col : 7 + 5 * col] = 1.0
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def tiny():
    x, y = digits(320, seed=0)
    x_test, y_test = digits(100, seed=1)
    return train_classifier(x, y, x_test, y_test, seed=3, **TINY), (x, y, x_test, y_test)


def assert_one_line(err: pytest.ExceptionInfo) -> None:
    assert "\n" not in str(err.value) and str(err.value)


@pytest.fixture
def tiny_mnist(monkeypatch):
    """Replace MNIST by the tiny set for `load_classifier`'s retraining; count the calls."""
    calls = []

    def arrays(path):
        calls.append(path)
        return (*digits(320, seed=0), *digits(100, seed=1))

    monkeypatch.setattr(ppclassifier, "_mnist_arrays", arrays)
    return calls


# training and inputs -------------------------------------------------------------------------


def test_training_is_seeded_and_leaves_the_global_rng_alone(tiny):
    clf, (x, y, x_test, y_test) = tiny
    state = torch.random.get_rng_state()
    again = train_classifier(x, y, x_test, y_test, seed=3, **TINY)
    assert torch.equal(state, torch.random.get_rng_state())
    for k, v in clf.get_weights().items():
        np.testing.assert_array_equal(v, again.get_weights()[k])
    other = train_classifier(x, y, x_test, y_test, seed=4, **TINY)
    assert not np.array_equal(clf.get_weights()["fc1.weight"], other.get_weights()["fc1.weight"])
    assert clf.info["seed"] == 3 and clf.info["epochs"] == 1 and clf.info["width"] == 2
    assert 0.0 <= clf.accuracy <= 1.0 and clf.accuracy == clf.info["test_accuracy"]


def test_a_wider_longer_training_learns_the_easy_classes():
    x, y = digits(600, seed=0)
    x_test, y_test = digits(200, seed=1)
    clf = train_classifier(
        x, y, x_test, y_test, width=4, features=16, epochs=2, batch_size=16, lr=1e-2
    )
    assert clf.accuracy > 0.9  # chance is 0.1; this reaches 1.0
    measured = (clf.predict_proba(x_test).argmax(1) == y_test).mean()
    assert measured == pytest.approx(clf.accuracy)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_outputs_have_their_shapes_in_every_input_form(tiny, batch_size):
    clf, (x, *_) = tiny
    x = x[:50]
    feats = clf.features(x, batch_size=batch_size)
    probs = clf.predict_proba(x, batch_size=batch_size)
    assert feats.shape == (50, clf.feature_dim) == (50, 8) and (feats >= 0).all()  # ReLU
    assert probs.shape == (50, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    frozen = x.copy()
    frozen.flags.writeable = False  # e.g. memory-mapped: no copy warning from torch
    forms = (x.reshape(50, 784), x[:, None], x.astype(np.float64), torch.from_numpy(x), frozen)
    for form in forms:
        np.testing.assert_allclose(clf.features(form, batch_size=batch_size), feats, rtol=1e-5)
    # Batching does not change the result.
    np.testing.assert_allclose(clf.features(x, batch_size=50), feats, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((4, 100)),  # not 28x28
        np.zeros((4, 3, 28, 28)),  # colour
        np.zeros((4, 28)),
        np.zeros(784),
        np.full((4, 784), np.nan),
        np.full((4, 784), 255.0),  # not scaled to [0, 1]
        -np.ones((4, 28, 28)),
    ],
)
def test_bad_images_are_refused_in_one_line(tiny, x):
    clf, _ = tiny
    for method in (clf.features, clf.predict_proba):
        with pytest.raises(DataError) as err:
            method(x)
        assert_one_line(err)


def test_bad_training_labels_are_refused(tiny):
    _, (x, y, x_test, y_test) = tiny
    for bad in (y + 10, y[:-1], y.astype(float)):
        with pytest.raises(DataError) as err:
            train_classifier(x, bad, x_test, y_test, **TINY)
        assert_one_line(err)


# storage -------------------------------------------------------------------------------------


def test_save_and_read_round_trip_with_a_checksum(tiny, tmp_path):
    clf, (x, *_) = tiny
    path = save_classifier(clf, tmp_path / "store")
    assert path == tmp_path / "store" / CLASSIFIER_FILE
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [CLASSIFIER_FILE, CLASSIFIER_META]
    )  # no temporary files left
    meta = json.loads((path.parent / CLASSIFIER_META).read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["ppgen_version"] and meta["test_accuracy"] == clf.accuracy
    back = read_classifier(path.parent)
    assert back.accuracy == clf.accuracy and back.info["seed"] == 3
    np.testing.assert_array_equal(back.features(x[:20]), clf.features(x[:20]))


def test_load_trains_when_missing_then_reads(tiny_mnist, tmp_path, capsys):
    first = load_classifier(tmp_path, progress=False, **{k: TINY[k] for k in ("width", "epochs")})
    assert tiny_mnist == [tmp_path]
    message = capsys.readouterr().err.strip()
    assert "no MNIST classifier" in message and "training" in message
    assert len(message.splitlines()) == 1
    assert (classifier_dir(tmp_path) / CLASSIFIER_FILE).is_file()
    second = load_classifier(tmp_path)  # read back: no training, no message
    assert tiny_mnist == [tmp_path] and capsys.readouterr().err == ""
    for k, v in first.get_weights().items():
        np.testing.assert_array_equal(v, second.get_weights()[k])


def test_the_data_directory_comes_from_ppgen_data(tiny_mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("PPGEN_DATA", str(tmp_path / "env"))
    load_classifier(progress=False, width=2, epochs=1)
    assert (tmp_path / "env" / "classifiers" / CLASSIFIER_FILE).is_file()
    load_classifier(tmp_path / "other", mnist_data_dir=tmp_path / "mnist", width=2, epochs=1)
    assert tiny_mnist[-1] == tmp_path / "mnist"


@pytest.mark.parametrize(
    "damage",
    ["flip_byte", "truncate", "drop_sidecar", "bad_sidecar", "wrong_tensors", "nan_weights"],
)
def test_corrupt_classifiers_are_refused_then_retrained(tiny, tiny_mnist, tmp_path, damage):
    clf, _ = tiny
    directory = classifier_dir(tmp_path)
    save_classifier(clf, directory)
    weights, sidecar = directory / CLASSIFIER_FILE, directory / CLASSIFIER_META
    raw = bytearray(weights.read_bytes())
    meta = json.loads(sidecar.read_text())
    if damage == "flip_byte":
        raw[-1] ^= 0xFF
        weights.write_bytes(raw)
    elif damage == "truncate":
        weights.write_bytes(raw[: len(raw) // 2])
    elif damage == "drop_sidecar":
        sidecar.unlink()
    elif damage == "bad_sidecar":
        sidecar.write_text("{not json")
    else:  # valid safetensors with a matching checksum, but not this network's weights
        from safetensors.torch import save

        tensors = {k: torch.from_numpy(v) for k, v in clf.get_weights().items()}
        if damage == "wrong_tensors":
            tensors.pop("fc2.bias")
        else:
            tensors["fc2.bias"] = torch.full_like(tensors["fc2.bias"], float("nan"))
        payload = save(tensors)
        weights.write_bytes(payload)
        sidecar.write_text(json.dumps({**meta, "sha256": hashlib.sha256(payload).hexdigest()}))
    with pytest.raises(CheckpointError) as err:
        read_classifier(directory)
    assert_one_line(err)
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path, retrain_if_missing=False)
    assert tiny_mnist == []
    fresh = load_classifier(tmp_path, progress=False, width=2, epochs=1)
    assert len(tiny_mnist) == 1
    stored = read_classifier(directory)  # the replacement reads back
    for k, v in fresh.get_weights().items():
        np.testing.assert_array_equal(stored.get_weights()[k], v)


class _Trap:
    """Unpickling this object writes a marker file: proof that something unpickled it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_under_the_name_is_never_unpickled(tiny, tiny_mnist, tmp_path):
    clf, _ = tiny
    directory = classifier_dir(tmp_path)
    save_classifier(clf, directory)
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"fc2.bias": _Trap(str(marker))})
    assert payload[:1] == b"\x80"  # a real pickle
    # Even with a matching checksum (someone edited the sidecar too), it is never unpickled.
    (directory / CLASSIFIER_FILE).write_bytes(payload)
    meta = json.loads((directory / CLASSIFIER_META).read_text())
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    (directory / CLASSIFIER_META).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_classifier(directory)
    load_classifier(tmp_path, progress=False, width=2, epochs=1)  # replaces the ppgen file
    assert not marker.exists() and len(tiny_mnist) == 1
    assert (directory / CLASSIFIER_FILE).read_bytes()[:1] != b"\x80"


def test_an_unwritable_data_directory_fails_before_training(tiny_mnist, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(DataError, match="PPGEN_DATA") as err:
        load_classifier(blocker / "data", progress=False)
    assert_one_line(err)
    assert tiny_mnist == []  # refused before reading MNIST or training


# image metrics -------------------------------------------------------------------------------


def test_image_sample_metrics(tiny):
    clf, (x, y, x_test, _) = tiny
    same = image_sample_metrics(x, x, clf, kid_subsets=3, kid_subset_size=100)
    assert set(same) == {
        "fid",
        "kid",
        "kid_std",
        "kid_subset_size",
        "classes",
        "kl_to_uniform",
        "inception_score",
        "num_samples",
        "classifier_accuracy",
    }
    assert abs(same["fid"]) < 1e-6 and same["num_samples"] == 320
    assert same["classifier_accuracy"] == clf.accuracy
    assert 1 <= same["classes"] <= 10 and 1.0 <= same["inception_score"] <= 10.0
    # Collapsed samples (one class repeated) are farther from the data than fresh data is.
    collapsed = np.repeat(x[y == 0][:1], 200, axis=0)
    far = image_sample_metrics(collapsed, x_test, clf, kid_subsets=3, kid_subset_size=500)
    near = image_sample_metrics(x[:200], x_test, clf, kid_subsets=3)
    assert far["kid_subset_size"] == 50  # lowered to half the smaller set (the subsets differ)
    assert far["kid_std"] > 0
    assert far["classes"] == 1 and far["inception_score"] == pytest.approx(1.0)
    assert far["kid"] > near["kid"]
    with pytest.raises(DataError, match="at least 9 samples") as err:
        image_sample_metrics(x[:5], x_test, clf)
    assert_one_line(err)
