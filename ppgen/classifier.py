"""The MNIST dataset classifier whose features and predictions score generated digits.

FID and KID on MNIST need a feature extractor trained on MNIST, not Inception (whose
ImageNet features say little about digits); like the GAN literature's MNIST scores, ppgen
uses its own small LeNet-like CNN (LeCun et al., 1998): two 5x5 convolutions with 2x2
max-pooling, a hidden layer whose ReLU activations are the features, and a 10-way linear
output. It is trained once, by ppgen, with a fixed seed, on the 60,000 MNIST training images
(``train_full``), and its test accuracy is measured on the 10,000 test images.

It is stored in ``<data_dir>/classifiers/`` (see `ppgen.data.data_dir`, ``PPGEN_DATA``) as
`CLASSIFIER_FILE` (safetensors: read without unpickling anything) and the sidecar
`CLASSIFIER_META` (JSON: the file's SHA-256, test accuracy, seed, epochs, sizes, versions).
`load_classifier` reads it and retrains it when it is missing or corrupt (a SHA-256 that
differs from the sidecar's, a file that is not safetensors, or the wrong tensors), replacing
these two ppgen-named files atomically; ppgen owns those names and writes nothing else there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn
from tqdm.auto import tqdm

from ppgen.data.checks import check_images
from ppgen.data.dataset import StrPath, data_dir
from ppgen.data.files import write_atomic
from ppgen.data.mnist import load_mnist
from ppgen.errors import CheckpointError, ConfigError, DataError
from ppgen.sample_quality import (
    class_histogram_stats,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)

__all__ = [
    "CLASSIFIER_FILE",
    "CLASSIFIER_FORMAT",
    "CLASSIFIER_META",
    "DatasetClassifier",
    "check_fid_count",
    "classifier_dir",
    "image_sample_metrics",
    "load_classifier",
    "read_classifier",
    "save_classifier",
    "train_classifier",
]

CLASSIFIER_FILE = "ppgen_mnist_classifier.safetensors"
"""The weights' file name in `classifier_dir`."""
CLASSIFIER_META = "ppgen_mnist_classifier.json"
"""The sidecar's file name in `classifier_dir`."""
CLASSIFIER_FORMAT = "ppgen-mnist-classifier-v1"
"""The ``format`` entry of the sidecar."""

_SIDE, _CLASSES = 28, 10


class _LeNet(nn.Module):
    """LeNet-5's layout (LeCun et al., 1998) with ReLU and max-pooling: conv5x5(w) - pool -
    conv5x5(2w) - pool - dense(features) [the features] - dense(10), unpadded convolutions
    (28 -> 24 -> 12 -> 8 -> 4)."""

    def __init__(self, width: int, features: int, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.utils.skip_init(nn.Conv2d, 1, width, 5)
        self.conv2 = nn.utils.skip_init(nn.Conv2d, width, 2 * width, 5)
        self.fc1 = nn.utils.skip_init(nn.Linear, 2 * width * 4 * 4, features)
        self.fc2 = nn.utils.skip_init(nn.Linear, features, _CLASSES)
        # torch's default initialisation (U(+-1/sqrt(fan_in))) from a local generator, so
        # the global random state is neither used nor changed.
        generator = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
                bound = 1.0 / math.sqrt(layer.weight[0].numel())
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 1, 28, 28)`` images -> ``(n, features)`` penultimate ReLU activations."""
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)  # (n, w, 12, 12)
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2)  # (n, 2w, 4, 4)
        return torch.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(n, 10)``."""
        return self.fc2(self.features(x))


def _tensor_shapes(width: int, features: int) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in _LeNet(width, features).state_dict().items()}


def _check_inputs(x: Any, name: str = "x") -> np.ndarray:
    """Images ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)`` in [0, 1] -> float32
    ``(n, 784)``."""
    arr = np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu().numpy()
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise DataError(
                f"{name} has shape {arr.shape}; pass grey-scale MNIST images (n, 784), "
                "(n, 28, 28) or (n, 1, 28, 28)"
            )
        arr = arr.reshape(len(arr), -1)
    return check_images(arr, dim=_SIDE * _SIDE, name=name)


class DatasetClassifier:
    """ppgen's MNIST classifier: features for FID/KID and class probabilities.

    Made by `train_classifier` or `read_classifier` (usually through `load_classifier`).
    Forward passes run on the CPU in batches, so any number of images fits in memory.

    Attributes:
        accuracy: test accuracy (fraction of the 10,000 MNIST test images, or of the test
            arrays given to `train_classifier`) measured when it was trained.
        info: the sidecar's entries (seed, epochs, width, versions, ...).
        feature_dim: the number of features per image (128 by default).
    """

    def __init__(self, net: _LeNet, info: dict[str, Any]) -> None:
        self._net = net.eval()
        self.info = dict(info)
        self.accuracy = float(info["test_accuracy"])
        self.feature_dim = int(net.fc1.out_features)

    def _apply(self, fn: Any, x: Any, batch_size: int) -> np.ndarray:
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        x = _check_inputs(x)
        out = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                rows = torch.tensor(x[i : i + batch_size]).view(-1, 1, _SIDE, _SIDE)  # a copy
                out.append(fn(rows).numpy())
        return np.concatenate(out)

    def features(self, x: Any, *, batch_size: int = 1000) -> np.ndarray:
        """Penultimate-layer (ReLU) activations.

        Args:
            x: images ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)`` in [0, 1].
            batch_size: images per forward pass.

        Returns:
            ``(n, feature_dim)`` float32.

        Raises:
            DataError: a wrong shape, NaN/Inf, or values outside [0, 1] (one line).
        """
        return self._apply(self._net.features, x, batch_size)

    def predict_proba(self, x: Any, *, batch_size: int = 1000) -> np.ndarray:
        """Class probabilities ``p(y | x)``: ``(n, 10)`` float32 (input and errors as
        `features`)."""
        return self._apply(lambda t: torch.softmax(self._net(t), dim=1), x, batch_size)

    def get_weights(self) -> dict[str, np.ndarray]:
        """The network's weights by name (torch layout), copies."""
        return {k: v.detach().numpy().copy() for k, v in self._net.state_dict().items()}


def _check_labels(y: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= _CLASSES:
        raise DataError(f"{name} must be {n} integer labels in [0, 10), got {y.dtype} {y.shape}")
    return y.astype(np.int64)


def _accuracy(net: _LeNet, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            rows = torch.tensor(x[i : i + batch_size]).view(-1, 1, _SIDE, _SIDE)  # a copy
            correct += int((net(rows).argmax(1).numpy() == y[i : i + batch_size]).sum())
    return correct / len(x)


def train_classifier(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    width: int = 16,
    features: int = 128,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> DatasetClassifier:
    """Train the LeNet-like classifier by Adam (Kingma and Ba, 2015) with a cosine-decayed
    learning rate, on the given arrays; deterministic given ``seed`` and the thread count.

    With the defaults on MNIST's 60,000 training images it reaches 99.15% test accuracy in
    about 5 minutes on two shared CPU cores (``benchmarks/classifier_mnist.py``).

    Args:
        x_train: training images ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)`` in [0, 1].
        y_train: ``(n,)`` integer labels in [0, 10).
        x_test: test images (same forms), for the recorded accuracy.
        y_test: their labels.
        width: channels of the first convolution (the second has ``2 * width``).
        features: units of the feature layer (the dimension of `DatasetClassifier.features`).
        epochs: passes over the training images.
        batch_size: images per Adam step (the last partial batch of an epoch is dropped).
        lr: Adam's initial learning rate.
        seed: seed of the initial weights (a local torch generator) and of the batch order.
        progress: show a tqdm bar over the steps.

    Returns:
        The trained `DatasetClassifier` (not stored; see `save_classifier`).

    Raises:
        DataError: bad images or labels (one line).
        ConfigError: a non-positive ``width``, ``features``, ``epochs``, ``batch_size`` or
            ``lr``.
    """
    sizes = {"width": width, "features": features, "epochs": epochs, "batch_size": batch_size}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not lr > 0:
        raise ConfigError(f"lr must be positive, got {lr!r}")
    x_train = _check_inputs(x_train, "x_train")
    x_test = _check_inputs(x_test, "x_test")
    y_train = _check_labels(y_train, len(x_train), "y_train")
    y_test = _check_labels(y_test, len(x_test), "y_test")
    batch_size = min(batch_size, len(x_train))
    clock = time.perf_counter()

    net = _LeNet(width, features, seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(x_train) // batch_size
    total = epochs * steps_per_epoch
    bar = tqdm(total=total, desc="MNIST classifier", unit="step", disable=not progress)
    net.train()
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        for i in range(steps_per_epoch):
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            rows = order[i * batch_size : (i + 1) * batch_size]
            xb = torch.from_numpy(x_train[rows]).view(-1, 1, _SIDE, _SIDE)
            loss = nn.functional.cross_entropy(net(xb), torch.from_numpy(y_train[rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            bar.update()
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
    bar.close()
    net.eval()
    from ppgen import __version__

    info = {
        "format": CLASSIFIER_FORMAT,
        "test_accuracy": _accuracy(net, x_test, y_test),
        "num_train": len(x_train),
        "num_test": len(x_test),
        "seed": int(seed),
        "epochs": epochs,
        "width": width,
        "features": features,
        "batch_size": batch_size,
        "lr": float(lr),
        "train_minutes": (time.perf_counter() - clock) / 60,
        "ppgen_version": __version__,
        "torch_version": torch.__version__,
        # float sums depend on how many threads split them: the weights are reproducible
        # given the seed, this thread count and the CPU's kind
        "torch_threads": torch.get_num_threads(),
    }
    return DatasetClassifier(net, info)


def classifier_dir(path: StrPath | None = None) -> Path:
    """Where the classifier is stored: ``<data_dir(path)>/classifiers`` (see
    `ppgen.data.data_dir`: ``path``, else ``PPGEN_DATA``, else the user's cache)."""
    return data_dir(path) / "classifiers"


def _unwritable(directory: Path, err: OSError) -> DataError:
    reason = f"{err.strerror}: {err.filename}" if err.strerror else str(err)
    return DataError(
        f"cannot store the MNIST classifier in {directory} ({reason}); set PPGEN_DATA (or pass "
        "data_dir=) to a writable directory"
    )


def save_classifier(classifier: DatasetClassifier, directory: StrPath) -> Path:
    """Store ``classifier`` in ``directory`` as `CLASSIFIER_FILE` and `CLASSIFIER_META`.

    Each file is written atomically (a temporary file, then ``os.replace``), weights first,
    so an interrupted save leaves a sidecar whose SHA-256 does not match: the pair is then
    read as corrupt and retrained, never half-used.

    Args:
        classifier: the classifier to store.
        directory: the folder (created if needed).

    Returns:
        The path of the weights' file.

    Raises:
        DataError: the folder cannot be created or written (one line: set PPGEN_DATA).
    """
    directory = Path(directory)
    tensors = {k: v.contiguous() for k, v in classifier._net.state_dict().items()}
    payload = save_safetensors(tensors)
    meta = {**classifier.info, "sha256": hashlib.sha256(payload).hexdigest()}
    try:
        write_atomic(directory / CLASSIFIER_FILE, payload)
        write_atomic(directory / CLASSIFIER_META, (json.dumps(meta, indent=1) + "\n").encode())
    except OSError as err:
        raise _unwritable(directory, err) from err
    return directory / CLASSIFIER_FILE


def read_classifier(directory: StrPath) -> DatasetClassifier:
    """Read the classifier stored in ``directory`` by `save_classifier`.

    The weights' bytes are checked against the sidecar's SHA-256 and parsed by safetensors
    (nothing is ever unpickled); the tensors must be exactly those of the recorded sizes,
    and finite.

    Args:
        directory: the folder holding `CLASSIFIER_FILE` and `CLASSIFIER_META`.

    Returns:
        The `DatasetClassifier`.

    Raises:
        CheckpointError: (one line) the files are missing, unreadable or corrupt.
    """
    directory = Path(directory)
    weights, sidecar = directory / CLASSIFIER_FILE, directory / CLASSIFIER_META
    if not weights.is_file() or not sidecar.is_file():
        raise CheckpointError(f"no MNIST classifier in {directory} (no {CLASSIFIER_FILE})")
    try:
        raw, meta_text = weights.read_bytes(), sidecar.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read the MNIST classifier in {directory} ({err})") from err
    try:
        meta = json.loads(meta_text)
        width, features = int(meta["width"]), int(meta["features"])
        expected = str(meta["sha256"])
        float(meta["test_accuracy"])
        ok = meta.get("format") == CLASSIFIER_FORMAT and width >= 1 and features >= 1
    except (ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise CheckpointError(f"file {sidecar} is not a ppgen classifier sidecar")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected:
        raise CheckpointError(f"file {weights} is corrupt (sha256 {digest}, expected {expected})")
    try:
        tensors = load_safetensors(raw)
    except (SafetensorError, ValueError) as err:
        raise CheckpointError(f"file {weights} is not a safetensors file ({err})") from err
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if shapes != _tensor_shapes(width, features) or not all(
        v.dtype == torch.float32 and torch.isfinite(v).all() for v in tensors.values()
    ):
        raise CheckpointError(
            f"file {weights} does not hold the finite float32 weights of the classifier its "
            f"sidecar describes (width {width}, {features} features)"
        )
    net = _LeNet(width, features)
    net.load_state_dict(tensors)
    return DatasetClassifier(net, meta)


def _check_writable(directory: Path) -> None:
    """Fail now (not after minutes of training) if ``directory`` cannot take the files."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".ppgen-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise _unwritable(directory, err) from err


def _mnist_arrays(path: StrPath | None) -> tuple[np.ndarray, ...]:
    """MNIST's 60,000 training and 10,000 test images and labels."""
    train, test = load_mnist("train_full", data_dir=path), load_mnist("test", data_dir=path)
    return train.x, train.y, test.x, test.y


def load_classifier(
    data_dir: StrPath | None = None,
    *,
    mnist_data_dir: StrPath | None = None,
    retrain_if_missing: bool = True,
    progress: bool = True,
    width: int = 16,
    features: int = 128,
    epochs: int = 5,
    seed: int = 0,
) -> DatasetClassifier:
    """ppgen's MNIST classifier from ``<data_dir>/classifiers``, trained there first if it
    is missing or corrupt.

    Retraining prints one line to stderr saying why and where, then trains on MNIST's
    ``train_full`` split (a few minutes on a CPU) and replaces the two ppgen-named files
    (`CLASSIFIER_FILE`, `CLASSIFIER_META`) atomically; a file under those names that ppgen
    did not write (its SHA-256 does not match) is replaced too, since ppgen owns the names.

    Args:
        data_dir: the data directory (see `ppgen.data.data_dir`; ``PPGEN_DATA`` by default).
        mnist_data_dir: where MNIST is read from when training (default: ``data_dir``), e.g.
            a read-only copy while the classifier goes to a writable ``data_dir``.
        retrain_if_missing: train a missing or corrupt classifier; if False, raise instead.
        progress: show a progress bar while training.
        width: the width of a newly trained network (see `train_classifier`).
        features: its number of features.
        epochs: its training epochs.
        seed: its seed.

    Returns:
        The stored classifier (whatever settings it was trained with; see its ``info``).

    Raises:
        CheckpointError: missing or corrupt, with ``retrain_if_missing=False``.
        DataError: the directory is not writable (one line: set PPGEN_DATA), or MNIST
            cannot be read for training.
    """
    directory = classifier_dir(data_dir)
    try:
        return read_classifier(directory)
    except CheckpointError as err:
        if not retrain_if_missing:
            raise
        reason = str(err)
    _check_writable(directory)
    print(
        f"ppgen: {reason}; training ppgen's MNIST classifier (seed {seed}, {epochs} epochs, a "
        f"few minutes on a CPU) into {directory}",
        file=sys.stderr,
        flush=True,
    )
    source = data_dir if mnist_data_dir is None else mnist_data_dir
    x_train, y_train, x_test, y_test = _mnist_arrays(source)
    classifier = train_classifier(
        x_train,
        y_train,
        x_test,
        y_test,
        width=width,
        features=features,
        epochs=epochs,
        seed=seed,
        progress=progress,
    )
    save_classifier(classifier, directory)
    return classifier


def check_fid_count(n: int, classifier: DatasetClassifier, flag: str) -> None:
    """Refuse ``n`` samples for FID unless they outnumber ``classifier``'s features (the
    covariances need more); ``flag`` names the option that sets ``n`` (``"-n"``,
    ``"--limit"``).

    Raises:
        ConfigError: ``n`` is at most the feature count (one line naming ``flag``).
    """
    features = int(classifier.info["features"])
    if n <= features:
        raise ConfigError(
            f"FID needs more samples than the classifier's {features} features: use {flag} >= "
            f"{features + 1} (thousands give a usable figure; the default is 10,000)"
        )


def image_sample_metrics(
    samples: Any,
    reference: Any,
    classifier: DatasetClassifier | None = None,
    *,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float | int]:
    """FID, KID, classes covered, KL to uniform and the inception score of generated MNIST
    digits, all with the dataset classifier (protocols: `ppgen.sample_quality`).

    Args:
        samples: generated images ``(n, 784)``, ``(n, 28, 28)`` or ``(n, 1, 28, 28)`` in
            [0, 1]; at least ``feature_dim + 1`` (129) of them, thousands in practice
            (FID is biased upwards for small ``n``; 10,000 is usual).
        reference: real images, same forms (e.g. MNIST's test set).
        classifier: the classifier; `load_classifier()` by default.
        kid_subsets: KID's number of subsets.
        kid_subset_size: KID's subset size, lowered to half the smaller set's size if needed
            (so the subsets differ; the value used is returned).
        seed: seed of KID's subsets.

    Returns:
        ``{"fid", "kid", "kid_std", "kid_subset_size", "classes" (predicted classes with at
        least one sample), "kl_to_uniform" (nats), "inception_score", "num_samples",
        "classifier_accuracy"}``.

    Raises:
        DataError: bad images, or too few of them for a covariance (one line).
    """
    if classifier is None:
        classifier = load_classifier()
    feats_s = classifier.features(samples)
    feats_r = classifier.features(reference)
    probs = classifier.predict_proba(samples)
    # At most half of each set: subsets as large as a set would all be that set, and KID's
    # spread over them would read 0 as if the estimate were exact.
    subset_size = max(2, min(kid_subset_size, len(feats_s) // 2, len(feats_r) // 2))
    kid, kid_std = kernel_inception_distance(
        feats_s, feats_r, subsets=kid_subsets, subset_size=subset_size, seed=seed
    )
    hist = class_histogram_stats(probs, _CLASSES)
    return {
        "fid": frechet_distance(feats_s, feats_r),
        "kid": kid,
        "kid_std": kid_std,
        "kid_subset_size": subset_size,
        "classes": hist["classes"],
        "kl_to_uniform": hist["kl_to_uniform"],
        "inception_score": inception_score(probs),
        "num_samples": len(feats_s),
        "classifier_accuracy": classifier.accuracy,
    }
