"""Character-level text: Tiny Shakespeare (Karpathy 2015), its vocabulary and token windows.

Tiny Shakespeare is the single file ``input.txt`` of karpathy/char-rnn (1,115,394
characters), kept in ``<data_dir>/tinyshakespeare/``; a missing file is downloaded (if
allowed) and every load checks its md5. The split is nanoGPT's
(``data/shakespeare_char/prepare.py``): the first ``int(0.9 n)`` characters train, the rest
validate, with one vocabulary over the whole text (nanoGPT's ``meta.pkl``; here JSON-able
data, see `Vocabulary.to_json`).
"""

import collections
import functools
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ppgen.data.batching import seeded_rng
from ppgen.data.dataset import StrPath, check_split, data_dir
from ppgen.data.files import check_md5, download_verified, fetch_url, unreadable_message
from ppgen.errors import ConfigError, DataError

__all__ = [
    "SHAKESPEARE_MD5",
    "SHAKESPEARE_TRAIN_FRACTION",
    "SHAKESPEARE_URL",
    "TextCorpus",
    "Vocabulary",
    "load_shakespeare",
    "shakespeare_dir",
]

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
"""Where a missing ``input.txt`` is downloaded from (karpathy/char-rnn)."""

SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"
"""The md5 of karpathy/char-rnn's ``input.txt`` (1,115,394 bytes)."""

SHAKESPEARE_TRAIN_FRACTION = 0.9
"""nanoGPT's split: the first ``int(0.9 * n)`` characters are ``train``, the rest ``valid``."""

_SHAKESPEARE_FILE = "input.txt"

# The fetch function Shakespeare downloads use (tests replace it with an offline one).
_fetch = fetch_url

_SHOWN_CHARACTERS = 5  # offending characters named in an out-of-vocabulary message


@dataclass(frozen=True)
class Vocabulary:
    """A character vocabulary: token id ``i`` is the character ``chars[i]``.

    Build it with `Vocabulary.from_text` (the sorted set of a text's characters, as nanoGPT
    and char-rnn do) and store it with `to_json` / `from_json`, so a trained model keeps the
    vocabulary it was trained with.

    Attributes:
        chars: the characters, one per token id, each a string of length 1, all different.
        codes: ``(size,)`` uint32, the Unicode code point of each token id (derived).
        sorted_codes, sorted_ids: the code points in increasing order and their token ids,
            the table `encode` searches (derived).

    Raises:
        DataError: if ``chars`` is empty, has an entry that is not one character, or repeats
            one.
    """

    chars: tuple[str, ...]
    sorted_codes: np.ndarray = field(init=False, repr=False, compare=False)
    sorted_ids: np.ndarray = field(init=False, repr=False, compare=False)
    codes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        chars = self.chars
        if not isinstance(chars, tuple) or not chars:
            raise DataError(
                f"a Vocabulary needs a non-empty tuple of characters, got {chars!r:.60}"
            )
        bad = [c for c in chars if not (isinstance(c, str) and len(c) == 1)]
        if bad:
            raise DataError(
                f"a Vocabulary holds single characters, got {bad[0]!r:.40}; split strings into "
                "characters"
            )
        twice = [c for c, k in collections.Counter(chars).items() if k > 1]
        if twice:
            raise DataError(f"a Vocabulary lists each character once, {twice[0]!r} is repeated")
        codes = np.fromiter(map(ord, chars), dtype=np.int64, count=len(chars))
        order = np.argsort(codes)
        # Lookup tables: code points sorted, the token id of each, and the id -> code point map.
        object.__setattr__(self, "sorted_codes", codes[order])
        object.__setattr__(self, "sorted_ids", order.astype(np.int32))
        object.__setattr__(self, "codes", codes.astype(np.uint32))

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        """The sorted set of the characters of ``text`` (nanoGPT's ``chars``).

        Raises:
            DataError: if ``text`` is empty or not a string.
        """
        if not isinstance(text, str) or not text:
            raise DataError(
                f"a Vocabulary is built from a non-empty string, got {type(text).__name__} "
                f"of length {len(text) if isinstance(text, str) else 'n/a'}"
            )
        return cls(tuple(sorted(set(text))))

    @property
    def size(self) -> int:
        """The number of tokens (characters)."""
        return len(self.chars)

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of the characters of ``text``.

        Args:
            text: a string whose characters are all in the vocabulary.

        Returns:
            A ``(len(text),)`` int32 array.

        Raises:
            DataError: if ``text`` is not a string, or has characters outside the vocabulary
                (naming the first few and the vocabulary's size).
        """
        if not isinstance(text, str):
            raise DataError(f"encode takes a string, got {type(text).__name__}")
        # UTF-32 gives one fixed-width code point per character: no Python loop over text.
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        sorted_codes = self.sorted_codes
        pos = np.searchsorted(sorted_codes, codes).clip(max=len(sorted_codes) - 1)
        unknown = sorted_codes[pos] != codes
        if unknown.any():
            bad = list(dict.fromkeys(chr(c) for c in codes[unknown]))
            shown = ", ".join(map(repr, bad[:_SHOWN_CHARACTERS]))
            more = (
                f" and {len(bad) - _SHOWN_CHARACTERS} more" if len(bad) > _SHOWN_CHARACTERS else ""
            )
            raise DataError(
                f"text has {len(bad)} character(s) outside the vocabulary of {self.size} "
                f"characters: {shown}{more}; remove or replace them, or use a model trained on "
                "a text that has them"
            )
        return self.sorted_ids[pos]

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """The text of a sequence of token ids (the inverse of `encode`).

        Args:
            ids: a 1-D sequence of integers in ``0 .. size - 1``.

        Returns:
            The string, one character per id.

        Raises:
            DataError: if ``ids`` is not a 1-D integer sequence or has ids outside the
                vocabulary.
        """
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids))
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise DataError(
                f"decode takes a 1-D sequence of integer token ids, got {ids.dtype} with shape "
                f"{ids.shape}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise DataError(
                f"token ids must be in 0..{self.size - 1} for a vocabulary of {self.size} "
                f"characters, got values in [{ids.min()}, {ids.max()}]"
            )
        codes = self.codes[ids.astype(np.intp)]
        return codes.tobytes().decode("utf-32-le")

    def to_json(self) -> dict:
        """The vocabulary as JSON-able data: ``{"chars": [c0, c1, ...]}``."""
        return {"chars": list(self.chars)}

    @classmethod
    def from_json(cls, d: dict) -> "Vocabulary":
        """The vocabulary `to_json` wrote.

        Raises:
            DataError: if ``d`` is not such a dict.
        """
        if not isinstance(d, dict) or not isinstance(d.get("chars"), list):
            raise DataError(
                'a stored Vocabulary is a dict {"chars": [...]}, got '
                f"{type(d).__name__} {sorted(d) if isinstance(d, dict) else ''}"
            )
        return cls(tuple(d["chars"]))


@dataclass(frozen=True)
class TextCorpus:
    """A stream of character tokens.

    Attributes:
        ids: ``(T,)`` int32 token ids, all in ``0 .. vocabulary.size - 1``.
        vocabulary: the `Vocabulary` the ids index.
        name: a short description such as ``"shakespeare-train"``.

    Raises:
        DataError: if ``ids`` is not a 1-D int32 array or has ids outside the vocabulary.
    """

    ids: np.ndarray
    vocabulary: Vocabulary
    name: str

    def __post_init__(self) -> None:
        ids = self.ids
        if not isinstance(ids, np.ndarray) or ids.dtype != np.int32 or ids.ndim != 1:
            raise DataError(
                f"TextCorpus {self.name!r}: ids must be a 1-D int32 array, got "
                f"{type(ids).__name__} {getattr(ids, 'dtype', '')} {getattr(ids, 'shape', '')}"
            )
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocabulary.size):
            raise DataError(
                f"TextCorpus {self.name!r}: ids must be in 0..{self.vocabulary.size - 1}, got "
                f"values in [{ids.min()}, {ids.max()}]"
            )

    @classmethod
    def from_text(
        cls, text: str, *, vocabulary: Vocabulary | None = None, name: str = "text"
    ) -> "TextCorpus":
        """The corpus of ``text`` in ``vocabulary`` (by default the text's own).

        Raises:
            DataError: if ``text`` has characters outside ``vocabulary`` (see
                `Vocabulary.encode`) or is empty.
        """
        vocabulary = Vocabulary.from_text(text) if vocabulary is None else vocabulary
        return cls(vocabulary.encode(text), vocabulary, name)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text(self) -> str:
        """The corpus as a string."""
        return self.vocabulary.decode(self.ids)

    def _check_length(self, length: int) -> None:
        if not isinstance(length, int | np.integer) or length < 2:
            raise ConfigError(
                f"a window must hold at least 2 tokens (an input and its next token), got "
                f"length {length!r}"
            )
        if length > len(self):
            raise ConfigError(
                f"window length {length} is longer than corpus {self.name!r} "
                f"({len(self)} tokens); use a shorter context"
            )

    def windows(self, length: int) -> np.ndarray:
        """The corpus cut into consecutive non-overlapping windows (the last partial one is
        dropped), e.g. to evaluate a model on every token once.

        A window of ``T + 1`` tokens holds a context of ``T`` inputs ``w[:, :-1]`` and their
        next tokens ``w[:, 1:]``.

        Args:
            length: tokens per window, ``2 <= length <= len(self)``.

        Returns:
            ``(len(self) // length, length)`` int32 (a view of `ids`).

        Raises:
            ConfigError: for ``length < 2`` or longer than the corpus.
        """
        self._check_length(length)
        n = len(self) // length
        return self.ids[: n * length].reshape(n, length)

    def random_windows(self, length: int, n: int, rng: int | np.random.Generator = 0) -> np.ndarray:
        """``n`` windows at independent uniform offsets, nanoGPT's ``get_batch``: with
        ``length = block_size + 1`` the offsets are ``randint(len - block_size)``.

        Args:
            length: tokens per window, ``2 <= length <= len(self)``.
            n: number of windows, at least 1.
            rng: a seed or a generator (advanced).

        Returns:
            ``(n, length)`` int32; row ``i`` is ``ids[o_i : o_i + length]`` with
            ``o_i ~ Uniform{0, ..., len(self) - length}``.

        Raises:
            ConfigError: for ``length < 2``, longer than the corpus, or ``n < 1``.
        """
        self._check_length(length)
        if not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"the number of windows must be a positive integer, got {n!r}")
        offsets = seeded_rng(rng).integers(0, len(self) - length + 1, size=n)
        return self.ids[offsets[:, None] + np.arange(length)]


def shakespeare_dir(path: StrPath | None = None) -> pathlib.Path:
    """The directory Tiny Shakespeare is read from: ``<data_dir(path)>/tinyshakespeare``."""
    return data_dir(path) / "tinyshakespeare"


@functools.lru_cache(maxsize=2)
def _read_text(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, Vocabulary]:
    # Keyed on mtime and size too, so a replaced file is verified and parsed again.
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as err:
        raise DataError(unreadable_message("Tiny Shakespeare", err)) from err
    check_md5(
        raw,
        path,
        SHAKESPEARE_MD5,
        f"delete it and load again, or copy in the file from {SHAKESPEARE_URL}",
    )
    text = raw.decode("utf-8")  # the md5 vouches for the bytes
    vocabulary = Vocabulary.from_text(text)
    ids = vocabulary.encode(text)
    ids.flags.writeable = False
    return ids, vocabulary


def load_shakespeare(
    split: str = "train", *, data_dir: StrPath | None = None, download: bool = True
) -> TextCorpus:
    """Load a split of Tiny Shakespeare as character tokens (65 characters).

    nanoGPT's split of the ``n = 1,115,394`` characters: ``train`` is the first
    ``int(0.9 n) = 1,003,854``, ``valid`` the last 111,540, ``train_full`` all of them.
    nanoGPT has no test split: ``test`` is the ``valid`` text, so ppgen reports the
    validation figure as its test figure (comparable with nanoGPT's "val loss"). Every split
    shares the vocabulary of the whole text, as nanoGPT's ``meta.pkl`` does.

    Args:
        split: ``"train"``, ``"valid"``, ``"test"`` (= ``valid``) or ``"train_full"``.
        data_dir: the data directory (see `ppgen.data.data_dir`); the file is
            ``<data_dir>/tinyshakespeare/input.txt``.
        download: fetch a missing file from `SHAKESPEARE_URL` (10 s timeout).

    Returns:
        A `TextCorpus` named ``"shakespeare-<split>"`` whose ``ids`` are read-only.

    Raises:
        ConfigError: for an unknown ``split``.
        DataError: if the file is missing and cannot be downloaded (naming the directory and
            the URL), unreadable, or corrupt (md5).
    """
    check_split(split)
    try:
        ids, vocabulary = _shakespeare(shakespeare_dir(data_dir), download)
    except PermissionError as err:
        raise DataError(unreadable_message("Tiny Shakespeare", err)) from err
    cut = int(len(ids) * SHAKESPEARE_TRAIN_FRACTION)  # nanoGPT: int(n * 0.9)
    part = {
        "train": slice(0, cut),
        "valid": slice(cut, None),
        "test": slice(cut, None),
        "train_full": slice(0, None),
    }[split]
    return TextCorpus(ids[part], vocabulary, f"shakespeare-{split}")


def _shakespeare(directory: pathlib.Path, download: bool) -> tuple[np.ndarray, Vocabulary]:
    """The whole text's ids and vocabulary, downloading the file if missing and allowed."""
    path = directory / _SHAKESPEARE_FILE
    if not path.is_file():
        reason = "download=False"
        if download:
            try:
                download_verified(
                    _SHAKESPEARE_FILE, directory, [SHAKESPEARE_URL], SHAKESPEARE_MD5, fetch=_fetch
                )
            except OSError as err:
                reason = f"download failed: {err}"
        if not path.is_file():
            raise DataError(
                f"Tiny Shakespeare file {_SHAKESPEARE_FILE} not found in {directory} ({reason}); "
                f"put the file from {SHAKESPEARE_URL} there, or set PPGEN_DATA (or pass "
                "data_dir=) to a directory whose tinyshakespeare/ sub-directory has it"
            )
    stat = path.stat()
    return _read_text(str(path), stat.st_mtime_ns, stat.st_size)
