"""Tests of ppgen.data: idx files, MNIST, digits, binarization, toy densities, batching."""

import collections
import gzip
import hashlib
import os
import pathlib
import shutil

import numpy as np
import pytest

import ppgen.data
from ppgen.data import (
    DIGITS_SPLIT_SIZES,
    MNIST_MD5,
    MNIST_URLS,
    SPLITS,
    TOY_DENSITIES,
    Dataset,
    bernoulli_binarize,
    binarize,
    check_images,
    data_dir,
    epoch_rng,
    iterate_minibatches,
    load_dataset,
    load_digits,
    load_mnist,
    minibatch_indices,
    mnist_dir,
    read_idx,
    sample_toy,
)
from ppgen.data import mnist as mnist_module
from ppgen.errors import ConfigError, DataError

MNIST_SPLIT_SIZES = {"train": 50_000, "valid": 10_000, "train_full": 60_000, "test": 10_000}
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C}
IDX_CODES |= {"float32": 0x0D, "float64": 0x0E}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test touches the network; a download attempt fails as if offline."""

    def offline(url, timeout=None):
        raise OSError(f"network disabled in tests ({url})")

    monkeypatch.setattr(mnist_module, "_fetch", offline)


@pytest.fixture(scope="module")
def mnist_root() -> pathlib.Path:
    """The shared data directory with mnist/ (PPGEN_DATA, else ../shared/data)."""
    root = pathlib.Path(
        os.environ.get("PPGEN_DATA") or pathlib.Path(__file__).parents[2] / "shared" / "data"
    )
    missing = [name for name in MNIST_MD5 if not (root / "mnist" / name).is_file()]
    assert not missing, f"MNIST files {missing} not in {root / 'mnist'}; set PPGEN_DATA"
    return root


def write_idx(path: pathlib.Path, x: np.ndarray, *, compress: bool = True) -> pathlib.Path:
    """Write ``x`` as an idx file (big-endian), gzip-compressed by default."""
    header = bytes([0, 0, IDX_CODES[x.dtype.name], x.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in x.shape)
    raw = header + x.astype(x.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)
    return path


def copy_test_files(root: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in TEST_FILES:
        shutil.copy(root / "mnist" / name, dest / name)
    return dest


# idx files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (0, 6)])
@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trip(tmp_path, dtype, shape, compress):
    x = (np.arange(np.prod(shape)).reshape(shape) * 3 - 7).astype(dtype)
    y = read_idx(write_idx(tmp_path / "x.idx", x, compress=compress))
    assert y.shape == x.shape and y.dtype == x.dtype and y.dtype.isnative
    np.testing.assert_array_equal(y, x)
    assert not y.flags.writeable


def _truncated_gzip(raw: bytes) -> bytes:
    return gzip.compress(raw)[:-20]


IDX_HEADER = bytes([0, 0, 0x08, 1]) + (4).to_bytes(4, "big")
BAD_IDX = {
    "truncated gzip": (_truncated_gzip(IDX_HEADER + bytes(4)), "gzip"),
    "corrupt gzip": (b"\x1f\x8b" + bytes(30), "gzip"),
    "wrong magic": (bytes([1, 2, 0x08, 1]) + (4).to_bytes(4, "big") + bytes(4), "magic"),
    "unknown type code": (bytes([0, 0, 0x0A, 1]) + (4).to_bytes(4, "big") + bytes(4), "magic"),
    "truncated header": (bytes([0, 0, 0x08, 3]) + bytes(4), "header"),
    "missing data": (IDX_HEADER + bytes(3), "3 bytes of data"),
    "trailing data": (IDX_HEADER + bytes(5), "5 bytes of data"),
    "empty file": (b"", "magic"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_read_idx_rejects_malformed_files(tmp_path, case):
    content, message = BAD_IDX[case]
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz"):
        read_idx(tmp_path / "nope.gz")


def test_read_idx_reads_the_real_label_file(mnist_root):
    y = read_idx(mnist_root / "mnist" / "t10k-labels-idx1-ubyte.gz")
    assert y.shape == (10_000,) and y.dtype == np.uint8
    np.testing.assert_array_equal(y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])


# data_dir ----------------------------------------------------------------------------------


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PPGEN_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert data_dir() == tmp_path / "home" / ".cache" / "ppgen"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "ppgen"
    monkeypatch.setenv("PPGEN_DATA", str(tmp_path / "env"))
    assert data_dir() == tmp_path / "env"
    assert data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_dir("~/x") == tmp_path / "home" / "x"
    assert not (tmp_path / "env").exists()  # resolving a directory creates nothing


def test_mnist_dir_prefers_the_subdirectory_else_a_flat_layout(tmp_path):
    assert mnist_dir(tmp_path) == tmp_path / "mnist"  # nothing there: the download target
    (tmp_path / "t10k-labels-idx1-ubyte.gz").touch()
    assert mnist_dir(tmp_path) == tmp_path
    (tmp_path / "mnist").mkdir()
    assert mnist_dir(tmp_path) == tmp_path / "mnist"


# MNIST -------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_load_mnist_splits(mnist_root, split):
    ds = load_mnist(split, data_dir=mnist_root, download=False)
    n = MNIST_SPLIT_SIZES[split]
    assert len(ds) == n and ds.x.shape == (n, 784) and ds.x.dtype == np.float32
    assert ds.y.shape == (n,) and ds.y.dtype == np.int64
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    np.testing.assert_array_equal(np.unique(ds.y), np.arange(10))
    # Grey values are the 256 levels k / 255 of the uint8 files (checked on a subset).
    levels = ds.x[:1000] * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    assert ds.image_shape == (28, 28) and ds.name == f"mnist-{split}"


def test_mnist_split_boundaries_and_labels(mnist_root):
    train = load_mnist("train", data_dir=mnist_root)
    valid = load_mnist("valid", data_dir=mnist_root)
    full = load_mnist("train_full", data_dir=mnist_root)
    np.testing.assert_array_equal(np.concatenate([train.x, valid.x]), full.x)
    np.testing.assert_array_equal(np.concatenate([train.y, valid.y]), full.y)
    np.testing.assert_array_equal(full.y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    labels = read_idx(mnist_root / "mnist" / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(full.y, labels)


def test_mnist_static_binarization(mnist_root):
    grey = load_mnist("test", data_dir=mnist_root)
    a = load_mnist("test", data_dir=mnist_root, binarize="static", seed=3)
    b = load_mnist("test", data_dir=mnist_root, binarize="static", seed=3)
    c = load_mnist("test", data_dir=mnist_root, binarize="static", seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.x.dtype == np.float32 and set(np.unique(a.x)) == {0.0, 1.0}
    assert not np.array_equal(a.x, c.x)
    np.testing.assert_array_equal(a.y, grey.y)
    assert np.all(a.x[grey.x == 0] == 0) and np.all(a.x[grey.x == 1] == 1)
    # 7.8M independent draws: the mean's standard error is ~1.5e-4.
    assert abs(a.x.mean() - grey.x.mean()) < 2e-3
    dynamic = load_mnist("test", data_dir=mnist_root, binarize="dynamic")
    np.testing.assert_array_equal(dynamic.x, grey.x)  # drawn per epoch by the trainers


def test_mnist_static_binarization_does_not_depend_on_the_split(mnist_root):
    kw = {"data_dir": mnist_root, "binarize": "static", "seed": 1}
    valid = load_mnist("valid", **kw)
    full = load_mnist("train_full", **kw)
    np.testing.assert_array_equal(full.x[50_000:], valid.x)


def test_load_mnist_reads_ppgen_data_and_a_flat_directory(mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PPGEN_DATA", str(mnist_root))
    assert len(load_mnist("test")) == 10_000
    flat = copy_test_files(mnist_root, tmp_path)  # files directly in the data directory
    monkeypatch.setenv("PPGEN_DATA", str(flat))
    np.testing.assert_array_equal(load_mnist("test").x, load_mnist("test", data_dir=mnist_root).x)


@pytest.mark.parametrize("name", TEST_FILES)
@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_load_mnist_detects_a_corrupt_copy(mnist_root, tmp_path, name, damage):
    directory = copy_test_files(mnist_root, tmp_path / "mnist")
    path = directory / name
    raw = bytearray(path.read_bytes())
    if damage == "flip a byte":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 2]
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="corrupt") as err:
        load_mnist("test", data_dir=tmp_path)
    message = str(err.value)
    assert str(path) in message and MNIST_MD5[name] in message and "delete" in message


@pytest.mark.parametrize("present", [(), ("t10k-images-idx3-ubyte.gz",)])
def test_load_mnist_missing_files_offline(mnist_root, tmp_path, present):
    directory = tmp_path / "mnist"
    directory.mkdir()
    for name in present:
        shutil.copy(mnist_root / "mnist" / name, directory / name)
    with pytest.raises(DataError) as err:
        load_mnist("test", data_dir=tmp_path)
    message = str(err.value)
    assert str(directory) in message and "PPGEN_DATA" in message and "\n" not in message
    for name in TEST_FILES:
        assert (name in message) == (name not in present)
    assert sorted(p.name for p in directory.iterdir()) == sorted(present)  # no partial files


def test_load_mnist_without_download_never_fetches(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(mnist_module, "_fetch", lambda url, timeout=None: calls.append(url))
    with pytest.raises(DataError, match="download=False"):
        load_mnist("train", data_dir=tmp_path, download=False)
    assert calls == []


def test_load_mnist_downloads_verified_files(mnist_root, tmp_path, monkeypatch):
    calls = []

    def fetch(url, timeout=None):
        calls.append(url)
        if url.startswith(MNIST_URLS[0]):
            raise OSError("mirror down")
        return (mnist_root / "mnist" / url.rsplit("/", 1)[1]).read_bytes()

    monkeypatch.setattr(mnist_module, "_fetch", fetch)
    ds = load_mnist("test", data_dir=tmp_path)
    assert len(ds) == 10_000
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(TEST_FILES)
    assert calls == [base + name for name in TEST_FILES for base in MNIST_URLS]


def test_load_mnist_rejects_a_corrupt_download(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist_module, "_fetch", lambda url, timeout=None: b"<html>login</html>")
    with pytest.raises(DataError, match="md5"):
        load_mnist("test", data_dir=tmp_path)
    directory = tmp_path / "mnist"
    assert not directory.exists() or list(directory.iterdir()) == []


MALFORMED_MNIST = {
    "32x32 images": (np.zeros((3, 32, 32), np.uint8), np.zeros(3, np.uint8), "not 28x28"),
    "images with 2 dims": (np.zeros((3, 784), np.uint8), np.zeros(3, np.uint8), "magic 2050"),
    "labels with 2 dims": (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), "2049"),
    "int32 images": (np.zeros((3, 28, 28), np.int32), np.zeros(3, np.uint8), "magic 3075"),
    "count mismatch": (np.zeros((3, 28, 28), np.uint8), np.zeros(2, np.uint8), "2 labels"),
    "wrong count": (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8), "not 10000"),
    "label 10": (np.zeros((10_000, 28, 28), np.uint8), np.full(10_000, 10, np.uint8), "above 9"),
}


@pytest.mark.parametrize("case", list(MALFORMED_MNIST))
def test_load_mnist_rejects_malformed_idx_files(tmp_path, monkeypatch, case):
    # Files with matching md5 sums, to reach the checks behind the md5 verification.
    images, labels, message = MALFORMED_MNIST[case]
    directory = tmp_path / "mnist"
    directory.mkdir()
    for name, x in zip(TEST_FILES, (images, labels), strict=True):
        digest = hashlib.md5(write_idx(directory / name, x).read_bytes()).hexdigest()
        monkeypatch.setitem(MNIST_MD5, name, digest)
    with pytest.raises(DataError, match=message):
        load_mnist("test", data_dir=tmp_path)


@pytest.mark.parametrize(("kw", "message"), [({"binarize": "dyn"}, "static"), ({}, "valid")])
def test_load_mnist_rejects_bad_options(tmp_path, kw, message):
    split = "test" if kw else "validation"
    with pytest.raises(ConfigError, match=message):
        load_mnist(split, data_dir=tmp_path, **kw)


# binarization ------------------------------------------------------------------------------


def test_binarize_modes():
    x = np.random.default_rng(0).random((200, 50)).astype(np.float32)
    static = binarize(x, "static", seed=5)
    np.testing.assert_array_equal(static, binarize(x, "static", seed=5))
    assert not np.array_equal(static, binarize(x, "static", seed=6))
    assert static.dtype == np.float32 and set(np.unique(static)) == {0.0, 1.0}
    for mode in ("none", "dynamic"):
        out = binarize(x.astype(np.float64), mode)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, x)
    with pytest.raises(ConfigError, match="none, static, dynamic"):
        binarize(x, "stochastic")


def test_bernoulli_binarize_is_a_bernoulli_draw():
    x = np.tile(np.array([0.0, 0.3, 1.0], np.float32), (100_000, 1))
    b = bernoulli_binarize(x, seed=0)
    assert b.dtype == np.float32 and b.shape == x.shape
    assert np.all(b[:, 0] == 0) and np.all(b[:, 2] == 1)
    assert abs(b[:, 1].mean() - 0.3) < 0.01  # standard error 1.4e-3
    with pytest.raises(DataError, match="outside"):
        bernoulli_binarize(x * 2)


def test_dynamic_binarization_differs_across_epochs():
    x = np.full((50, 20), 0.5, np.float32)
    draws = [bernoulli_binarize(x, epoch_rng(7, epoch)) for epoch in (0, 1, 0)]
    assert not np.array_equal(draws[0], draws[1])
    np.testing.assert_array_equal(draws[0], draws[2])


# digits ------------------------------------------------------------------------------------


def test_load_digits_splits_partition_the_data():
    import sklearn.datasets

    splits = {split: load_digits(split) for split in SPLITS}
    for split, ds in splits.items():
        n = DIGITS_SPLIT_SIZES[split]
        assert ds.x.shape == (n, 64) and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
        assert ds.x.min() == 0.0 and ds.x.max() == 1.0 and ds.image_shape == (8, 8)
        np.testing.assert_array_equal(np.unique(ds.y), np.arange(10))
    full = np.concatenate([splits["train"].x, splits["valid"].x])
    np.testing.assert_array_equal(full, splits["train_full"].x)
    images, labels = sklearn.datasets.load_digits(return_X_y=True)
    rows = lambda x, y: collections.Counter(map(bytes, np.column_stack([x * 16, y]).astype(int)))
    ours = rows(full, splits["train_full"].y) + rows(splits["test"].x, splits["test"].y)
    assert ours == rows(images / 16, labels)
    np.testing.assert_array_equal(load_digits("test").x, splits["test"].x)  # fixed split


def test_load_digits_static_binarization():
    a = load_digits("train_full", binarize="static", seed=2)
    np.testing.assert_array_equal(a.x, load_digits("train_full", binarize="static", seed=2).x)
    assert set(np.unique(a.x)) == {0.0, 1.0}
    assert not np.array_equal(a.x, load_digits("train_full", binarize="static", seed=3).x)
    valid = load_digits("valid", binarize="static", seed=2)
    np.testing.assert_array_equal(a.x[DIGITS_SPLIT_SIZES["train"] :], valid.x)


# load_dataset and Dataset ------------------------------------------------------------------


def test_load_dataset_dispatches(mnist_root):
    np.testing.assert_array_equal(load_dataset("digits", "valid").x, load_digits("valid").x)
    ds = load_dataset("mnist", "test", data_dir=mnist_root, binarize="none")
    assert ds.name == "mnist-test" and len(ds) == 10_000


@pytest.mark.parametrize(
    ("name", "split", "kw", "message"),
    [
        ("cifar", "train", {}, "mnist, digits"),
        ("digits", "training", {}, "train, valid, test, train_full"),
        ("digits", "train", {"data_dir": "."}, "data_dir.*binarize, seed"),
    ],
)
def test_load_dataset_rejects_unknown_choices(name, split, kw, message):
    with pytest.raises(ConfigError, match=message):
        load_dataset(name, split, **kw)


@pytest.mark.parametrize(
    ("x", "y", "image_shape"),
    [
        (np.zeros((2, 4), np.float64), None, (2, 2)),
        (np.zeros(4, np.float32), None, (2, 2)),
        (np.zeros((2, 4), np.float32), None, (3, 3)),
        (np.zeros((2, 4), np.float32), np.zeros(3, np.int64), (2, 2)),
        (np.zeros((2, 4), np.float32), np.zeros(2, np.int32), (2, 2)),
    ],
)
def test_dataset_rejects_bad_arrays(x, y, image_shape):
    with pytest.raises(DataError):
        Dataset(x=x, y=y, image_shape=image_shape, name="bad")


# toy densities -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOY_DENSITIES)
@pytest.mark.parametrize("n", [1, 7, 2_000])
def test_sample_toy(name, n):
    x = sample_toy(name, n, seed=0)
    assert x.shape == (n, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, sample_toy(name, n, seed=0))
    if n > 1:
        assert not np.array_equal(x, sample_toy(name, n, seed=1))
    assert np.abs(x).max() < 8  # all densities live in a box around the origin


@pytest.mark.parametrize("name", ["8gaussians", "pinwheel", "2spirals", "checkerboard"])
def test_symmetric_toy_densities_are_centred(name):
    x = sample_toy(name, 4_000, seed=0)
    assert np.all(np.abs(x.mean(axis=0)) < 0.2)  # standard error of the mean ~0.03


def test_checkerboard_lies_on_dark_squares():
    x = sample_toy("checkerboard", 2_000, seed=0)
    squares = np.floor(x / 2).astype(int)  # squares of side 2 in [-4, 4]^2
    assert np.all((squares.sum(axis=1) % 2) == 0)


def test_8gaussians_is_near_its_centres():
    x = sample_toy("8gaussians", 2_000, seed=0).astype(np.float64)
    angles = np.arange(8) * np.pi / 4
    centres = 4 / 1.414 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    distance = np.linalg.norm(x[:, None] - centres[None], axis=-1).min(axis=1)
    assert distance.max() < 6 * 0.5 / 1.414  # P(radius > 6 std) = exp(-18) per point


def test_sample_toy_takes_the_dataset_names():
    """``--dataset`` names (TOY_DATASETS) draw the same points as the density's own name."""
    np.testing.assert_array_equal(
        sample_toy("moons", 7, seed=3), sample_toy("two_moons", 7, seed=3)
    )
    np.testing.assert_array_equal(
        sample_toy("spirals", 7, seed=3), sample_toy("2spirals", 7, seed=3)
    )


@pytest.mark.parametrize(("name", "n", "seed"), [("moon", 5, 0), ("2spirals", 0, 0)])
def test_sample_toy_rejects_bad_arguments(name, n, seed):
    with pytest.raises(ConfigError):
        sample_toy(name, n, seed)


# batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (100, 100), (1000, 32), (7, 1)])
def test_minibatch_indices_is_a_permutation(n, batch_size):
    idx = minibatch_indices(n, batch_size, seed=0, epoch=3)
    assert idx.shape == (n // batch_size, batch_size) and idx.dtype == np.int32
    assert len(np.unique(idx)) == idx.size and idx.min() >= 0 and idx.max() < n
    np.testing.assert_array_equal(idx, minibatch_indices(n, batch_size, seed=0, epoch=3))
    if n > 1:
        for other in ({"seed": 0, "epoch": 4}, {"seed": 1, "epoch": 3}):
            assert not np.array_equal(idx, minibatch_indices(n, batch_size, **other))


def test_minibatch_indices_without_shuffle_is_in_order():
    idx = minibatch_indices(12, 4, seed=0, epoch=0, shuffle=False, drop_last=False)
    np.testing.assert_array_equal(idx, np.arange(12).reshape(3, 4))


@pytest.mark.parametrize(
    ("n", "batch_size", "kw"),
    [
        (10, 0, {}),
        (10, 11, {}),
        (10, 3, {"drop_last": False}),
        (0, 1, {}),
        (10, 2, {"seed": -1}),
        (10, 2, {"epoch": 1.5}),
    ],
)
def test_minibatch_indices_rejects_bad_arguments(n, batch_size, kw):
    kw = {"seed": 0, "epoch": 0} | kw
    with pytest.raises(ConfigError):
        minibatch_indices(n, batch_size, **kw)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (10, 5), (10, 20)])
def test_iterate_minibatches_covers_every_example_once(n, batch_size):
    x = np.arange(n * 2).reshape(n, 2)
    batches = list(iterate_minibatches(x, batch_size, seed=1, epoch=2))
    assert [len(b) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches[-1]) == (n % batch_size or min(batch_size, n))
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)[:, 0]), x[:, 0])


def test_iterate_minibatches_agrees_with_minibatch_indices():
    x = np.random.default_rng(0).random((103, 4))
    batches = list(iterate_minibatches(x, 10, seed=2, epoch=5, drop_last=True))
    idx = minibatch_indices(103, 10, seed=2, epoch=5)
    assert len(batches) == len(idx)
    for batch, rows in zip(batches, idx, strict=True):
        np.testing.assert_array_equal(batch, x[rows])
    in_order = list(iterate_minibatches(x, 50, seed=0, epoch=0, shuffle=False))
    assert [len(b) for b in in_order] == [50, 50, 3] and np.shares_memory(in_order[0], x)
    with pytest.raises(ConfigError):
        list(iterate_minibatches(x, 200, seed=0, epoch=0, drop_last=True))


# check_images ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "x", [np.full((4, 3, 3), 0.5), np.ones((4, 9), np.uint8), np.zeros((4, 9), bool)]
)
def test_check_images_accepts_and_flattens(x):
    out = check_images(x, dim=9)
    assert out.shape == (4, 9) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.asarray(x, np.float32).reshape(4, 9))


def test_check_images_does_not_copy_float32():
    x = np.zeros((3, 784), np.float32)
    assert check_images(x) is x


def _with_bad_values(value: float) -> np.ndarray:
    x = np.zeros((5, 784), np.float32)
    x[2, 7] = x[3, 0] = value
    return x


CHECK_IMAGES_ERRORS = {
    "strings": (np.array([["a", "b"]]), {}, "dtype <U1"),
    "objects": (np.array([[0.5, None]], dtype=object), {}, "dtype object"),
    "1-D": (np.zeros(784), {}, r"1 dimension.*x\[None\]"),
    "4-D": (np.zeros((2, 1, 28, 28)), {}, "4 dimension"),
    "empty": (np.zeros((0, 784)), {}, "empty"),
    "wrong size": (np.zeros((2, 1024)), {"dim": 784}, r"1024 features.*32x32.*784 \(28x28\)"),
    "NaN": (_with_bad_values(np.nan), {}, r"2 NaN/Inf.*example 2 \(pixel 7\)"),
    "Inf": (_with_bad_values(np.inf), {}, "2 NaN/Inf"),
    "negative": (_with_bad_values(-0.1), {}, r"outside \[0, 1\]"),
    "0..255": (np.full((2, 4), 255, np.uint8), {}, r"max 255.*x / 255"),
}


@pytest.mark.parametrize("case", list(CHECK_IMAGES_ERRORS))
def test_check_images_errors(case):
    x, kw, message = CHECK_IMAGES_ERRORS[case]
    with pytest.raises(DataError, match=message) as err:
        check_images(x, **kw)
    assert "\n" not in str(err.value)


def test_check_images_names_the_array():
    with pytest.raises(DataError, match="^batch has"):
        check_images(np.zeros(3), name="batch")


def test_public_api_is_exported():
    assert all(hasattr(ppgen.data, name) for name in ppgen.data.__all__)
