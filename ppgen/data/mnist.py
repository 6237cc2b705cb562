"""MNIST (LeCun et al., 1998) from the four canonical ``idx.gz`` files, md5-verified.

The files live in ``<data_dir>/mnist/`` (see `ppgen.data.data_dir`). As a convenience, a
directory that has no ``mnist/`` sub-directory but holds the files itself is used as is.
Missing files are downloaded (if allowed) atomically and checked against the canonical md5
sums before they are used; every load checks the md5 of the files it reads.

Splits follow the convention of the VAE literature: ``train`` is the first 50,000 images
of the training file, ``valid`` the last 10,000, ``train_full`` all 60,000 and ``test``
the 10,000 of the test file.
"""

import functools
import gzip
import math
import pathlib
import zlib

import numpy as np

from ppgen.data.batching import seeded_rng
from ppgen.data.binarization import check_binarize_mode
from ppgen.data.dataset import Dataset, StrPath, check_split, data_dir
from ppgen.data.files import check_md5, download_verified, fetch_url, unreadable_message
from ppgen.errors import DataError

__all__ = ["MNIST_MD5", "MNIST_URLS", "load_mnist", "mnist_dir", "read_idx"]

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""The md5 sums of the canonical gzip files, by file name."""

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses
    "http://yann.lecun.com/exdb/mnist/",  # the canonical host (often refuses downloads)
)
"""Base URLs tried in order for a missing file."""

# source file -> (image file, label file, number of examples)
_SOURCES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60_000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10_000),
}
# split -> (source file, rows of it)
_SPLIT_ROWS = {
    "train": ("train", slice(0, 50_000)),
    "valid": ("train", slice(50_000, 60_000)),
    "train_full": ("train", slice(0, 60_000)),
    "test": ("test", slice(0, 10_000)),
}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049  # uint8 with 3 dimensions, uint8 with 1 dimension

# idx type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "IDX format")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _redownload_hint(path: pathlib.Path) -> str:
    return f"delete {path} and load again to re-download it, or copy in a good one"


def _decode_idx(raw: bytes, path: pathlib.Path) -> tuple[int, np.ndarray]:
    """Parse idx bytes (gzip-compressed or not) into ``(magic number, array)``."""
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"file {path} is not a readable gzip file ({err}); {_redownload_hint(path)}"
            ) from err
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(
            f"file {path} is not an idx file (bad magic number {raw[:4].hex()}); "
            f"{_redownload_hint(path)}"
        )
    magic, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"file {path} has a truncated idx header; {_redownload_hint(path)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) - header != needed:
        raise DataError(
            f"file {path} has {len(raw) - header} bytes of data but its idx header (shape "
            f"{shape}, {dtype.name}) needs {needed}; {_redownload_hint(path)}"
        )
    x = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    if not dtype.isnative:
        x = x.astype(dtype.newbyteorder("="))
    x.flags.writeable = False
    return magic, x


def read_idx(path: StrPath) -> np.ndarray:
    """Read an idx file (the format of the MNIST files), gzip-compressed or not.

    Args:
        path: the file; it is decompressed if it starts with the gzip magic bytes.

    Returns:
        A read-only array with the file's shape and element type (in native byte order);
        copy it to modify it.

    Raises:
        DataError: if the file is missing, is not valid gzip, has a bad idx header, or
            holds more or fewer bytes than its header says.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read idx file {path} ({err})") from err
    return _decode_idx(raw, path)[1]


@functools.lru_cache(maxsize=8)
def _read_verified(path: str, mtime_ns: int, size: int, md5: str) -> tuple[int, np.ndarray]:
    # Keyed on mtime and size too, so a replaced file is verified and parsed again.
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err})") from err
    check_md5(raw, path, md5, _redownload_hint(pathlib.Path(path)))
    return _decode_idx(raw, pathlib.Path(path))


def _read_mnist_file(path: pathlib.Path) -> tuple[int, np.ndarray]:
    stat = path.stat()
    return _read_verified(str(path), stat.st_mtime_ns, stat.st_size, MNIST_MD5[path.name])


def mnist_dir(path: StrPath | None = None) -> pathlib.Path:
    """The directory MNIST is read from: ``<data_dir(path)>/mnist``.

    If that sub-directory does not exist but the data directory itself holds any of the
    MNIST files, the data directory is used instead.

    Raises:
        DataError: The data directory (``PPGEN_DATA``) is a file.
    """
    root = data_dir(path)
    if root.exists() and not root.is_dir():
        source = "data_dir" if path is not None else "PPGEN_DATA"
        raise DataError(
            f"{source} names {root}, which is a file, not a directory: set {source} to the "
            "directory that holds (or will hold) the mnist/ folder"
        )
    sub = root / "mnist"
    if not sub.is_dir() and any((root / name).is_file() for name in MNIST_MD5):
        return root
    return sub


# The fetch function MNIST downloads use (tests replace it with an offline one).
_fetch = fetch_url


def _download(filename: str, directory: pathlib.Path) -> None:
    """Fetch ``filename`` from the first mirror that serves the canonical bytes.

    Raises:
        OSError: naming every URL tried and why it failed.
    """
    urls = [base + filename for base in MNIST_URLS]
    download_verified(filename, directory, urls, MNIST_MD5[filename], fetch=_fetch)


def _ensure_files(directory: pathlib.Path, names: tuple[str, ...], download: bool) -> None:
    missing = [name for name in names if not (directory / name).is_file()]
    if not missing:
        return
    reason = "download=False"
    if download:
        try:
            for name in missing:
                _download(name, directory)
            return
        except OSError as err:  # offline: stop at the first file rather than time out 4x
            reason = f"download failed: {err}"
        missing = [name for name in names if not (directory / name).is_file()]
    raise DataError(
        f"MNIST file(s) {', '.join(missing)} not found in {directory} ({reason}); put the "
        f"canonical files from {MNIST_URLS[-1]} there, or set PPGEN_DATA (or pass "
        "data_dir=) to a directory whose mnist/ sub-directory has them"
    )


def _check_pair(
    directory: pathlib.Path,
    names: tuple[str, str],
    images: tuple[int, np.ndarray],
    labels: tuple[int, np.ndarray],
    count: int,
) -> None:
    """Check that an image file and a label file form an MNIST source file."""
    (image_magic, x), (label_magic, y) = images, labels
    image_path, label_path = directory / names[0], directory / names[1]
    fix = "it is not an MNIST file; replace it with the canonical one"
    if image_magic != _IMAGE_MAGIC:
        raise DataError(
            f"file {image_path} has idx magic {image_magic}, not {_IMAGE_MAGIC} (uint8 "
            f"images); {fix}"
        )
    if label_magic != _LABEL_MAGIC:
        raise DataError(
            f"file {label_path} has idx magic {label_magic}, not {_LABEL_MAGIC} (uint8 "
            f"labels); {fix}"
        )
    if x.shape[1:] != (28, 28):
        raise DataError(
            f"file {image_path} holds {x.shape[1]}x{x.shape[2]} images, not 28x28; {fix}"
        )
    if len(x) != len(y):
        raise DataError(
            f"file {image_path} has {len(x)} images but {label_path} has {len(y)} labels; "
            "replace both with the canonical files"
        )
    if len(x) != count:
        raise DataError(f"file {image_path} has {len(x)} images, not {count}; {fix}")
    if y.max(initial=0) > 9:
        raise DataError(f"file {label_path} has labels above 9; {fix}")


def load_mnist(
    split: str = "train",
    *,
    data_dir: StrPath | None = None,
    binarize: str = "none",
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load an MNIST split as flat 28x28 images in [0, 1] with int64 labels.

    Parsed files are cached in memory (keyed on path, size and modification time), so
    loading several splits reads and verifies each file once.

    Args:
        split: ``"train"`` (50,000), ``"valid"`` (10,000), ``"train_full"`` (60,000) or
            ``"test"`` (10,000).
        data_dir: the data directory (see `ppgen.data.data_dir`); MNIST is read from its
            ``mnist/`` sub-directory.
        binarize: ``"none"`` or ``"dynamic"`` for grey values (dynamic binarization is
            drawn per epoch by the trainers), ``"static"`` for one fixed Bernoulli draw.
            The static draw depends on ``seed`` and the source file only and is made over
            the whole file before slicing, so an example is binarized the same way whichever
            split it is loaded through (``train`` + ``valid`` == ``train_full``).
        seed: seed of the static binarization.
        download: fetch missing files (10 s timeout per URL, see `MNIST_URLS`).

    Returns:
        A `Dataset` named ``"mnist-<split>"`` with ``x`` of shape ``(N, 784)``.

    Raises:
        ConfigError: for an unknown ``split`` or ``binarize`` mode.
        DataError: if files are missing and cannot be downloaded (the message names the
            directory and the files), unreadable (permissions), or corrupt or malformed;
            or if the data directory is a file.
    """
    check_split(split)
    check_binarize_mode(binarize)
    source, rows = _SPLIT_ROWS[split]
    image_file, label_file, count = _SOURCES[source]
    try:
        directory = mnist_dir(data_dir)
        _ensure_files(directory, (image_file, label_file), download)
        images = _read_mnist_file(directory / image_file)
        labels = _read_mnist_file(directory / label_file)
    except PermissionError as err:
        raise DataError(unreadable_message("the MNIST data", err)) from err
    _check_pair(directory, (image_file, label_file), images, labels, count)

    pixels = images[1].reshape(count, 28 * 28)  # (N, 784) uint8
    x = pixels[rows] / np.float32(255)  # float32
    if binarize == "static":
        # The draw of bernoulli_binarize over the whole file, keyed by (seed, file), then
        # sliced: an example is binarized alike in every split (train + valid == train_full).
        rng = seeded_rng(seed, zlib.crc32(image_file.encode()))
        u = rng.random((count, 28 * 28), dtype=np.float32)[rows]
        x = (u < x).astype(np.float32)
    y = labels[1][rows].astype(np.int64)
    return Dataset(x=x, y=y, image_shape=(28, 28), name=f"mnist-{split}", num_classes=10)
