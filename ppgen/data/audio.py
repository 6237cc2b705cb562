"""Audio: 16-bit PCM WAV files, mu-law companding and the speech corpus, in numpy.

WAV files are read and written with the standard library's ``wave`` module. Waveform models
(WaveNet, van den Oord et al. 2016) see mu-law codes: a sample ``x`` in [-1, 1] is companded
by ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` and quantised to ``mu + 1`` levels.

The speech corpus lives in ``<data_dir>/speech/``: ``train/``, ``valid/`` and ``test/`` hold
16 kHz mono 16-bit WAV files (64 / 8 / 8 utterances), ``transcripts.tsv`` the voice and the
text of each, and ``MD5SUMS`` the md5 of every file. It is synthetic (eSpeak NG) and has no
download URL; every load checks the md5 of each file it reads.
"""

import functools
import io
import pathlib
import struct
import wave
from dataclasses import dataclass

import numpy as np

from ppgen.data.dataset import StrPath, check_split, data_dir
from ppgen.data.files import check_md5, unreadable_message, write_atomic
from ppgen.errors import ConfigError, DataError

__all__ = [
    "MU_LAW_CHANNELS",
    "SPEECH_RATE",
    "AudioCorpus",
    "load_speech",
    "mu_law_decode",
    "mu_law_encode",
    "read_wav",
    "speech_dir",
    "to_float",
    "write_wav",
]

SPEECH_RATE = 16_000
"""Samples per second of the speech corpus and of ppgen's speech models."""

MU_LAW_CHANNELS = 256
"""Quantisation levels of 8-bit mu-law (``mu = 255``), the WaveNet paper's."""

_INT16_SCALE = 32768.0  # int16 k <-> float k / 32768 in [-1, 1)
_SPEECH_PARTS = {
    "train": ("train",),
    "valid": ("valid",),
    "test": ("test",),
    "train_full": ("train", "valid"),
}
_TRANSCRIPT_COLUMNS = ("file", "split", "voice", "text")  # the columns load_speech reads
_WAVE_FORMATS = {1: "PCM", 3: "float", 6: "A-law", 7: "mu-law", 0xFFFE: "extensible"}


def _channels_name(n: int) -> str:
    return {1: "mono", 2: "stereo"}.get(n, f"{n}-channel")


def _needed(path: StrPath, rate: int | None) -> str:
    """What ppgen needs and how to get it, the end of a wrong-format message."""
    rate_out = SPEECH_RATE if rate is None else rate
    target = pathlib.Path(path).with_name(f"{pathlib.Path(path).stem}-{rate_out // 1000}k.wav")
    khz = "" if rate is None else f"{rate / 1000:g} kHz "
    return (
        f"ppgen's speech models need {khz}mono 16-bit PCM: convert it, e.g. "
        f"`sox {path} -r {rate_out} -c 1 -b 16 {target}`"
    )


def _describe_fmt_chunk(raw: bytes) -> str | None:
    """``"44100 Hz stereo 32-bit float"`` from a RIFF/WAVE ``fmt `` chunk, or None if ``raw``
    has none (for formats the ``wave`` module refuses, to say what the file is)."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(raw):
        chunk, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and pos + 24 <= len(raw):
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", raw[pos + 8 : pos + 24])
            kind = _WAVE_FORMATS.get(tag, f"format {tag:#06x}")
            return f"{rate} Hz {_channels_name(channels)} {bits}-bit {kind}"
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _decode_wav(raw: bytes, path: StrPath, rate: int | None) -> tuple[np.ndarray, int]:
    """Parse the bytes of a mono 16-bit PCM WAV file into ``(int16 samples, rate)``."""
    if raw[:4] != b"RIFF" or raw[8:12] not in (b"WAVE", b""):
        raise DataError(f"{path} is not a WAV file (no RIFF/WAVE header)")
    try:
        with wave.open(io.BytesIO(raw), "rb") as w:
            channels, width, file_rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            frames = w.getnframes()
            data = w.readframes(frames)
    except (wave.Error, EOFError) as err:
        what = _describe_fmt_chunk(raw)
        if what is None or "unknown format" not in str(err):
            why = str(err) or ("it ends early" if isinstance(err, EOFError) else "bad header")
            raise DataError(f"{path} is not a readable WAV file ({why})") from err
        raise DataError(f"{path} is {what}; {_needed(path, rate)}") from err
    if channels != 1 or width != 2 or (rate is not None and file_rate != rate):
        what = f"{file_rate} Hz {_channels_name(channels)} {8 * width}-bit PCM"
        raise DataError(f"{path} is {what}; {_needed(path, rate)}")
    if len(data) != 2 * frames:
        raise DataError(
            f"{path} is truncated: its header announces {frames} samples but it holds "
            f"{len(data) // 2}; copy in a complete file"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.int16), file_rate


def read_wav(path: StrPath, *, rate: int | None = SPEECH_RATE) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit PCM WAV file.

    Args:
        path: the file.
        rate: the sample rate (Hz) the file must have; None accepts any.

    Returns:
        ``(samples, rate)``: ``(T,)`` int16 samples (scale them with `to_float`) and the
        file's sample rate in Hz.

    Raises:
        DataError: one line, if the file cannot be read, is not a WAV file, is truncated, or
            has another rate, sample width, channel count or encoding (naming what it is and
            a ``sox`` command that converts it).
    """
    try:
        raw = pathlib.Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror})") from err
    return _decode_wav(raw, path, rate)


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 samples ``k`` as float32 ``k / 32768`` in [-1, 1) (exact).

    Raises:
        DataError: if ``samples`` is not an int16 array.
    """
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise DataError(f"to_float takes int16 samples, got {samples.dtype}")
    return samples.astype(np.float32) / np.float32(_INT16_SCALE)


def write_wav(
    path: StrPath, samples: np.ndarray, rate: int = SPEECH_RATE, *, overwrite: bool = False
) -> pathlib.Path:
    """Write samples as a mono 16-bit PCM WAV file, atomically (temporary file, then
    ``os.replace``).

    Float samples ``x`` become ``clip(round(32768 x), -32768, 32767)``, the inverse of
    `to_float` (so int16 -> `to_float` -> `write_wav` -> `read_wav` is the identity).

    Args:
        path: the file to write; its directory is created if needed.
        samples: ``(T,)`` int16, or float in [-1, 1].
        rate: samples per second (Hz), positive.
        overwrite: replace an existing file.

    Returns:
        ``path`` as a `pathlib.Path`.

    Raises:
        ConfigError: if ``path`` exists and ``overwrite`` is False, or ``rate`` is not a
            positive integer.
        DataError: if ``samples`` is not 1-D, not int16 or float, or has values outside
            [-1, 1] (or NaN).
        OSError: if the file cannot be written (permissions, a full disk).
    """
    path = pathlib.Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; pass overwrite=True or choose another file name")
    if not isinstance(rate, int | np.integer) or isinstance(rate, bool) or rate <= 0:
        raise ConfigError(f"the sample rate must be a positive integer (Hz), got {rate!r}")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise DataError(
            f"write_wav writes mono audio: samples must be 1-D (T,), got shape {x.shape}"
        )
    if x.dtype.kind == "f":
        if x.size and not (np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0):
            raise DataError(
                f"float samples must be in [-1, 1], got values in [{np.min(x):g}, "
                f"{np.max(x):g}]; scale or clip them first"
            )
        x = np.clip(np.round(x.astype(np.float64) * _INT16_SCALE), -32768, 32767)
    elif x.dtype != np.int16:
        raise DataError(f"samples must be int16 or float in [-1, 1], got dtype {x.dtype}")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(x.astype("<i2").tobytes())
    write_atomic(path, buffer.getvalue())
    return path


def _check_channels(channels: int) -> int:
    if not isinstance(channels, int | np.integer) or isinstance(channels, bool) or channels < 2:
        raise ConfigError(f"mu-law needs an integer number of channels >= 2, got {channels!r}")
    return int(channels)


def mu_law_encode(x: np.ndarray, channels: int = MU_LAW_CHANNELS) -> np.ndarray:
    """Mu-law companding and quantisation (WaveNet, van den Oord et al. 2016, section 2.2).

    ``f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu)`` with ``mu = channels - 1``, then
    ``q = floor((f(x) + 1) / 2 * mu + 0.5)``: ``f`` in [-1, 1] is mapped to [0, mu] and
    rounded half up, so ``x = -1 -> 0``, ``x = 0 -> 128`` and ``x = 1 -> 255`` for 256
    channels. This is torchaudio's ``mu_law_encoding`` and the WaveNet reference code's.

    Args:
        x: float samples in [-1, 1], any shape (e.g. ``to_float(int16_samples)``); computed
            in float64.
        channels: quantisation levels, ``mu + 1`` (256 in the paper).

    Returns:
        int32 codes in ``0 .. channels - 1`` with the shape of ``x``.

    Raises:
        ConfigError: if ``channels`` is not an integer >= 2.
        DataError: if ``x`` is not floating point (int16 samples: use `to_float` first) or
            has values outside [-1, 1] (or NaN).
    """
    mu = _check_channels(channels) - 1
    x = np.asarray(x)
    if x.dtype.kind != "f":
        hint = "; scale int16 samples with to_float first" if x.dtype == np.int16 else ""
        raise DataError(f"mu_law_encode takes float samples in [-1, 1], got {x.dtype}{hint}")
    x = x.astype(np.float64)
    if x.size and not (np.all(np.isfinite(x)) and np.abs(x).max() <= 1.0):
        raise DataError(
            f"mu_law_encode takes samples in [-1, 1], got values in [{np.min(x):g}, {np.max(x):g}]"
        )
    f = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((f + 1) / 2 * mu + 0.5).astype(np.int32)


def mu_law_decode(
    q: np.ndarray, channels: int = MU_LAW_CHANNELS, *, dtype: np.dtype = np.float32
) -> np.ndarray:
    """The sample a mu-law code stands for, the inverse of `mu_law_encode`'s companding.

    ``y = 2 q / mu - 1`` and ``x = sign(y) ((1 + mu)^|y| - 1) / mu`` with ``mu = channels -
    1`` (torchaudio's ``mu_law_decoding``), so ``mu_law_encode(mu_law_decode(q)) == q``.

    Args:
        q: integer codes in ``0 .. channels - 1``, any shape.
        channels: quantisation levels, ``mu + 1``.
        dtype: the floating dtype of the result (computed in float64).

    Returns:
        Samples in [-1, 1] with the shape of ``q``.

    Raises:
        ConfigError: if ``channels`` is not an integer >= 2.
        DataError: if ``q`` is not integer or has codes outside ``0 .. channels - 1``.
    """
    mu = _check_channels(channels) - 1
    q = np.asarray(q)
    if q.dtype.kind not in "iu":
        raise DataError(f"mu_law_decode takes integer codes, got {q.dtype}")
    if q.size and (q.min() < 0 or q.max() > mu):
        raise DataError(
            f"mu-law codes must be in 0..{mu} for {mu + 1} channels, got values in "
            f"[{q.min()}, {q.max()}]"
        )
    y = 2 * q.astype(np.float64) / mu - 1
    # A power rather than exp(|y| ln(1 + mu)): code 0 and code mu decode to exactly -1 and 1.
    return (np.sign(y) * ((1.0 + mu) ** np.abs(y) - 1) / mu).astype(dtype)


@dataclass(frozen=True)
class AudioCorpus:
    """A set of utterances with the voice and the text of each.

    Attributes:
        utterances: one ``(T_i,)`` int16 array per utterance (read-only when loaded).
        rate: samples per second (Hz).
        voices: ``(N,)`` int64, the index in ``voice_names`` of each utterance's voice.
        voice_names: the voices, sorted over the whole corpus so every split agrees.
        texts: the text spoken in each utterance.
        name: a short description such as ``"speech-train"``.

    Raises:
        DataError: if the fields do not have those types, or their lengths disagree.
    """

    utterances: list[np.ndarray]
    rate: int
    voices: np.ndarray
    voice_names: tuple[str, ...]
    texts: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        n, what = len(self.utterances), f"AudioCorpus {self.name!r}"
        bad = [
            i
            for i, u in enumerate(self.utterances)
            if not (isinstance(u, np.ndarray) and u.dtype == np.int16 and u.ndim == 1)
        ]
        if bad:
            u = self.utterances[bad[0]]
            raise DataError(
                f"{what}: utterance {bad[0]} must be a 1-D int16 array, got "
                f"{type(u).__name__} {getattr(u, 'dtype', '')} {getattr(u, 'shape', '')}"
            )
        voices = self.voices
        if not isinstance(voices, np.ndarray) or voices.dtype != np.int64 or voices.shape != (n,):
            raise DataError(
                f"{what}: voices must be an int64 array of shape ({n},), got "
                f"{getattr(voices, 'dtype', type(voices).__name__)} "
                f"{getattr(voices, 'shape', '')}"
            )
        if n and (voices.min() < 0 or voices.max() >= len(self.voice_names)):
            raise DataError(
                f"{what}: voices index voice_names (0..{len(self.voice_names) - 1}), got "
                f"values in [{voices.min()}, {voices.max()}]"
            )
        if len(self.texts) != n:
            raise DataError(f"{what}: {len(self.texts)} texts for {n} utterances")
        if not isinstance(self.rate, int | np.integer) or self.rate <= 0:
            raise DataError(f"{what}: rate must be a positive integer (Hz), got {self.rate!r}")

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def seconds(self) -> float:
        """The total duration in seconds."""
        return sum(len(u) for u in self.utterances) / self.rate

    def mu_law(self, channels: int = MU_LAW_CHANNELS) -> list[np.ndarray]:
        """Each utterance as mu-law codes (see `mu_law_encode`): a list of ``(T_i,)`` int32."""
        return [mu_law_encode(to_float(u), channels) for u in self.utterances]

    def segments(
        self, length: int, hop: int | None = None, *, channels: int = MU_LAW_CHANNELS
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fixed windows of mu-law codes cut from every utterance, to train a waveform
        model on a fixed context.

        Windows start at ``0, hop, 2 hop, ...`` in each utterance and lie wholly inside it
        (an utterance's tail shorter than ``length`` is dropped, and so is an utterance
        shorter than ``length``).

        Args:
            length: samples per window, at least 2.
            hop: samples between window starts (default ``length``: no overlap).
            channels: mu-law levels.

        Returns:
            ``(ids, voices)``: ``(N, length)`` int32 codes, and ``(N,)`` int64 the voice of
            the utterance each window comes from.

        Raises:
            ConfigError: for ``length < 2``, ``hop < 1``, or ``length`` longer than every
                utterance.
        """
        if not isinstance(length, int | np.integer) or length < 2:
            raise ConfigError(f"a segment needs at least 2 samples, got length {length!r}")
        hop = length if hop is None else hop
        if not isinstance(hop, int | np.integer) or hop < 1:
            raise ConfigError(f"the hop between segments must be a positive integer, got {hop!r}")
        longest = max((len(u) for u in self.utterances), default=0)
        if length > longest:
            raise ConfigError(
                f"segment length {length} is longer than every utterance of {self.name!r} "
                f"(the longest has {longest} samples); use a shorter length"
            )
        ids, voices = [], []
        for codes, voice in zip(self.mu_law(channels), self.voices, strict=True):
            if len(codes) < length:
                continue
            w = np.lib.stride_tricks.sliding_window_view(codes, length)[::hop]
            ids.append(w)
            voices.append(np.full(len(w), voice, dtype=np.int64))
        return np.concatenate(ids).astype(np.int32), np.concatenate(voices)


def speech_dir(path: StrPath | None = None) -> pathlib.Path:
    """The directory the speech corpus is read from: ``<data_dir(path)>/speech``."""
    return data_dir(path) / "speech"


def _read_bytes(path: pathlib.Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise DataError(unreadable_message("the speech corpus", err)) from err


def _fix(path: pathlib.Path) -> str:
    return f"copy in the file {path.name} of the speech corpus again"


@functools.lru_cache(maxsize=128)
def _read_verified_wav(path: str, mtime_ns: int, size: int, md5: str) -> np.ndarray:
    # Keyed on mtime and size too, so a replaced file is verified and parsed again.
    raw = _read_bytes(pathlib.Path(path))
    check_md5(raw, path, md5, _fix(pathlib.Path(path)))
    samples, _ = _decode_wav(raw, path, SPEECH_RATE)
    samples.flags.writeable = False  # shared by every load through this cache
    return samples


def _read_md5sums(directory: pathlib.Path) -> dict[str, str]:
    """``MD5SUMS`` (``md5sum`` output) as relative path -> md5."""
    path = directory / "MD5SUMS"
    sums = {}
    for number, line in enumerate(_read_bytes(path).decode("utf-8", "replace").splitlines()):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DataError(
                f"{path} line {number + 1} is not 'MD5  FILE' ({line[:60]!r}); copy in the "
                "corpus's MD5SUMS again"
            )
        name = parts[1].lstrip("*")  # md5sum marks binary mode with '*'
        sums[name.removeprefix("./")] = parts[0].lower()
    return sums


def _read_transcripts(directory: pathlib.Path, sums: dict[str, str]) -> dict[str, dict]:
    """``transcripts.tsv`` (md5-verified) as file -> row (a dict by column name)."""
    path = directory / "transcripts.tsv"
    if "transcripts.tsv" not in sums:
        raise DataError(f"{directory / 'MD5SUMS'} has no line for transcripts.tsv; {_fix(path)}")
    raw = _read_bytes(path)
    check_md5(raw, path, sums["transcripts.tsv"], _fix(path))
    try:
        header, *lines = raw.decode("utf-8").splitlines()
    except (UnicodeDecodeError, ValueError) as err:  # only with a matching MD5SUMS line
        raise DataError(f"{path} is not a UTF-8 table ({err}); {_fix(path)}") from err
    columns = header.split("\t")
    missing = [c for c in _TRANSCRIPT_COLUMNS if c not in columns]
    if missing:  # only reachable with a matching MD5SUMS line for a foreign file
        raise DataError(f"{path} has no column(s) {', '.join(missing)}; {_fix(path)}")
    rows = {}
    for number, line in enumerate(lines):
        fields = line.split("\t", len(columns) - 1)
        if len(fields) != len(columns):
            raise DataError(
                f"{path} line {number + 2} has {len(fields)} tab-separated fields, not "
                f"{len(columns)}; {_fix(path)}"
            )
        row = dict(zip(columns, fields, strict=True))
        rows[row["file"]] = row
    return rows


def load_speech(split: str = "train", *, data_dir: StrPath | None = None) -> AudioCorpus:
    """Load a split of the speech corpus (16 kHz mono 16-bit, eSpeak NG voices).

    Args:
        split: ``"train"`` (64 utterances), ``"valid"`` (8), ``"test"`` (8) or
            ``"train_full"`` (``train`` + ``valid``, 72).
        data_dir: the data directory (see `ppgen.data.data_dir`); the corpus is its
            ``speech/`` sub-directory.

    Returns:
        An `AudioCorpus` named ``"speech-<split>"``, utterances in file-name order, with
        the voices of the whole corpus as ``voice_names``.

    Raises:
        ConfigError: for an unknown ``split``.
        DataError: if the corpus is missing (there is no download: the message says where to
            put it), a file is unreadable, corrupt (md5, naming the file), not 16 kHz mono
            16-bit PCM, missing from its split, not listed in ``MD5SUMS``, or has no
            transcript line.
    """
    check_split(split)
    try:
        return _load_speech(split, speech_dir(data_dir))
    except PermissionError as err:
        raise DataError(unreadable_message("the speech corpus", err)) from err


def _load_speech(split: str, directory: pathlib.Path) -> AudioCorpus:
    if not (directory / "MD5SUMS").is_file():
        raise DataError(
            f"speech corpus not found in {directory} (no MD5SUMS); it has no download: copy "
            "the speech/ folder (train/, valid/, test/, transcripts.tsv, MD5SUMS) there, or set "
            "PPGEN_DATA (or pass data_dir=) to a directory whose speech/ sub-directory has it"
        )
    sums = _read_md5sums(directory)
    rows = _read_transcripts(directory, sums)
    voice_names = tuple(sorted({row["voice"] for row in rows.values()}))
    utterances, voices, texts = [], [], []
    for part in _SPEECH_PARTS[split]:
        listed = {f for f in sums if f.startswith(f"{part}/") and f.endswith(".wav")}
        present = {f"{part}/{p.name}" for p in (directory / part).glob("*.wav")}
        for problem, files in (
            ("listed in MD5SUMS but missing", listed - present),
            ("not listed in MD5SUMS", present - listed),
        ):
            if files:
                raise DataError(
                    f"speech file(s) {', '.join(sorted(files)[:3])} in {directory} are {problem}; "
                    "copy in the whole speech/ folder again"
                )
        if not listed:
            sums_path = directory / "MD5SUMS"
            raise DataError(f"{sums_path} lists no {part}/*.wav files; {_fix(sums_path)}")
        for name in sorted(listed):
            path = directory / name
            row = rows.get(name)
            if row is None or row["split"] != part:
                raise DataError(
                    f"{directory / 'transcripts.tsv'} has no {part} line for {name}; "
                    "copy in the whole speech/ folder again"
                )
            stat = path.stat()
            utterances.append(
                _read_verified_wav(str(path), stat.st_mtime_ns, stat.st_size, sums[name])
            )
            voices.append(voice_names.index(row["voice"]))
            texts.append(row["text"])
    return AudioCorpus(
        utterances=utterances,
        rate=SPEECH_RATE,
        voices=np.asarray(voices, dtype=np.int64),
        voice_names=voice_names,
        texts=tuple(texts),
        name=f"speech-{split}",
    )
