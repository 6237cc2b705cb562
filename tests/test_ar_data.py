"""Tests of the autoregressive models' data: character text (Tiny Shakespeare), WAV files,
mu-law companding, the speech corpus and integer grey levels."""

import hashlib
import json
import os
import pathlib
import shutil
import struct
import wave

import numpy as np
import pytest

import ppgen.data.mnist
import ppgen.data.text
from ppgen.data import (
    AUDIO_DATASETS,
    MU_LAW_CHANNELS,
    SHAKESPEARE_MD5,
    SHAKESPEARE_URL,
    SPEECH_RATE,
    TEXT_DATASETS,
    AudioCorpus,
    TextCorpus,
    Vocabulary,
    load_audio,
    load_digits,
    load_mnist,
    load_shakespeare,
    load_speech,
    load_text,
    mu_law_decode,
    mu_law_encode,
    pixel_levels,
    read_idx,
    read_wav,
    to_float,
    write_wav,
)
from ppgen.errors import ConfigError, DataError

# nanoGPT's data/shakespeare_char/prepare.py on input.txt: n = 1,115,394, int(0.9 n).
SHAKESPEARE_SIZES = {"train": 1_003_854, "valid": 111_540, "test": 111_540}
SHAKESPEARE_SIZES["train_full"] = 1_115_394
SPEECH_SIZES = {"train": 64, "valid": 8, "test": 8, "train_full": 72}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No test touches the network; a download attempt fails as if offline."""

    def offline(url, timeout=None):
        raise OSError(f"network disabled in tests ({url})")

    monkeypatch.setattr(ppgen.data.text, "_fetch", offline)
    monkeypatch.setattr(ppgen.data.mnist, "_fetch", offline)


@pytest.fixture(scope="module")
def shared_root() -> pathlib.Path:
    """The shared data directory (PPGEN_DATA, else ../shared/data) with Tiny Shakespeare
    and the speech corpus; a missing file fails the test (as MNIST's do in test_data.py)."""
    root = pathlib.Path(
        os.environ.get("PPGEN_DATA") or pathlib.Path(__file__).parents[2] / "shared" / "data"
    )
    needed = ["tinyshakespeare/input.txt", "speech/MD5SUMS", "speech/transcripts.tsv"]
    missing = [name for name in needed if not (root / name).is_file()]
    assert not missing, f"data files {missing} not in {root}; set PPGEN_DATA"
    return root


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --- Vocabulary and TextCorpus ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["hello world\n", "ab\tc\n\nÉté 🙂 — ça va?", "x"])
def test_vocabulary_round_trip(text):
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == tuple(sorted(set(text))) and vocab.size == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert [vocab.chars[i] for i in ids] == list(text)
    assert vocab.decode(ids) == text
    stored = json.loads(json.dumps(vocab.to_json()))
    assert Vocabulary.from_json(stored) == vocab


def test_vocabulary_in_any_order():
    """A stored vocabulary need not be sorted: ids follow its order."""
    vocab = Vocabulary(("z", "a", "\n", "é"))
    assert vocab.encode("aé\nz").tolist() == [1, 3, 2, 0]
    assert vocab.decode([0, 1, 2, 3]) == "za\né"
    assert vocab.decode(np.array([], dtype=np.int32)) == ""


def test_encode_outside_the_vocabulary_is_one_line():
    vocab = Vocabulary.from_text("abc\n")
    with pytest.raises(DataError) as err:
        vocab.encode("ab\tcé")
    message = one_line(err)
    assert "2 character(s) outside the vocabulary of 4 characters: '\\t', 'é'" in message
    with pytest.raises(DataError) as err:
        vocab.encode("0123456789")
    assert "'0', '1', '2', '3', '4' and 5 more" in one_line(err)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Vocabulary(()),
        lambda: Vocabulary(("a", "bc")),
        lambda: Vocabulary(("a", "b", "a")),
        lambda: Vocabulary.from_text(""),
        lambda: Vocabulary.from_json({"chars": "abc"}),
        lambda: Vocabulary.from_json(["a"]),
        lambda: Vocabulary.from_text("ab").decode([0, 2]),
        lambda: Vocabulary.from_text("ab").decode([[0, 1]]),
        lambda: Vocabulary.from_text("ab").decode([0.5]),
        lambda: Vocabulary.from_text("ab").encode(b"ab"),
        lambda: TextCorpus(np.array([0, 1]), Vocabulary.from_text("ab"), "int64"),
        lambda: TextCorpus(np.array([0, 2], np.int32), Vocabulary.from_text("ab"), "range"),
    ],
)
def test_bad_vocabularies_and_ids_are_one_line_errors(make):
    with pytest.raises(DataError) as err:
        make()
    one_line(err)


def test_windows_tile_the_corpus():
    corpus = TextCorpus.from_text("abcdefghijklmnopqrstuvwxyz0123456789", name="toy")  # 36
    w = corpus.windows(5)
    assert w.shape == (7, 5) and w.dtype == np.int32
    np.testing.assert_array_equal(w.ravel(), corpus.ids[:35])  # the last partial one dropped
    assert corpus.windows(36).shape == (1, 36)


def test_random_windows_are_slices_at_uniform_offsets():
    # Distinct characters in sorted order: token ids 0..49, so a slice is a run of ids.
    text = "".join(chr(ord("A") + i) for i in range(50))
    corpus = TextCorpus.from_text(text)
    w = corpus.random_windows(10, 4000, np.random.default_rng(1))
    assert w.shape == (4000, 10) and w.dtype == np.int32
    np.testing.assert_array_equal(w, w[:, :1] + np.arange(10))
    # Every offset 0..40 occurs (nanoGPT: randint(len - block_size), block_size = 9).
    assert set(w[:, 0].tolist()) == set(range(41))
    np.testing.assert_array_equal(corpus.random_windows(10, 5, 3), corpus.random_windows(10, 5, 3))


@pytest.mark.parametrize("call", ["windows", "random_windows"])
@pytest.mark.parametrize("length", [1, 0, 37, 2.0])
def test_window_lengths_outside_the_corpus_are_config_errors(call, length):
    corpus = TextCorpus.from_text("abcdefghijklmnopqrstuvwxyz0123456789")
    args = (length, 3) if call == "random_windows" else (length,)
    with pytest.raises(ConfigError) as err:
        getattr(corpus, call)(*args)
    one_line(err)


def test_random_windows_need_a_positive_count():
    with pytest.raises(ConfigError):
        TextCorpus.from_text("abcdef").random_windows(3, 0)


# --- Tiny Shakespeare --------------------------------------------------------------------------


def test_shakespeare_splits_are_nanogpts(shared_root):
    corpora = {s: load_shakespeare(s, data_dir=shared_root) for s in SHAKESPEARE_SIZES}
    assert {s: len(c) for s, c in corpora.items()} == SHAKESPEARE_SIZES
    full = corpora["train_full"]
    assert full.vocabulary.size == 65 and all(
        c.vocabulary == full.vocabulary for c in corpora.values()
    )
    np.testing.assert_array_equal(
        np.concatenate([corpora["train"].ids, corpora["valid"].ids]), full.ids
    )
    np.testing.assert_array_equal(corpora["test"].ids, corpora["valid"].ids)
    assert corpora["valid"].text.startswith("?\n\nGREMIO:")  # nanoGPT's val.bin starts here
    # Decoding gives back the file byte for byte.
    raw = full.text.encode("utf-8")
    assert hashlib.md5(raw, usedforsecurity=False).hexdigest() == SHAKESPEARE_MD5
    assert not full.ids.flags.writeable
    assert TEXT_DATASETS == {"shakespeare": load_shakespeare}
    assert len(load_text("shakespeare", "valid", data_dir=shared_root)) == 111_540


def test_a_corrupt_shakespeare_is_one_line_error(shared_root, tmp_path):
    raw = bytearray((shared_root / "tinyshakespeare" / "input.txt").read_bytes())
    raw[1000] ^= 1
    path = tmp_path / "tinyshakespeare" / "input.txt"
    path.parent.mkdir()
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        load_shakespeare("train", data_dir=tmp_path)
    message = one_line(err)
    assert f"file {path} is corrupt" in message and SHAKESPEARE_MD5 in message


@pytest.mark.parametrize("download", [False, True])
def test_a_missing_shakespeare_offline_names_the_directory_and_url(tmp_path, download):
    with pytest.raises(DataError) as err:
        load_shakespeare("valid", data_dir=tmp_path, download=download)
    message = one_line(err)
    assert str(tmp_path / "tinyshakespeare") in message and SHAKESPEARE_URL in message
    assert ("download failed" in message) == download
    assert not (tmp_path / "tinyshakespeare" / "input.txt").exists()


def test_shakespeare_downloads_only_the_verified_file(shared_root, tmp_path, monkeypatch):
    good = (shared_root / "tinyshakespeare" / "input.txt").read_bytes()
    monkeypatch.setattr(ppgen.data.text, "_fetch", lambda url, timeout=None: b"<html>")
    with pytest.raises(DataError, match="md5"):
        load_shakespeare("train", data_dir=tmp_path)
    assert list(tmp_path.rglob("*.txt*")) == []  # no partial or wrong file left
    urls = []
    monkeypatch.setattr(
        ppgen.data.text, "_fetch", lambda url, timeout=None: urls.append(url) or good
    )
    assert len(load_shakespeare("train", data_dir=tmp_path)) == SHAKESPEARE_SIZES["train"]
    assert urls == [SHAKESPEARE_URL]
    assert (tmp_path / "tinyshakespeare" / "input.txt").read_bytes() == good


def test_shakespeare_rejects_an_unknown_split(shared_root):
    with pytest.raises(ConfigError):
        load_shakespeare("dev", data_dir=shared_root)
    with pytest.raises(ConfigError, match="unknown text dataset"):
        load_text("sonnets", "train")
    with pytest.raises(ConfigError, match="no option"):
        load_text("shakespeare", "train", binarize="static")


# --- WAV files -------------------------------------------------------------------------------


def write_pcm(path, rate, channels, width, frames=100) -> pathlib.Path:
    """A PCM WAV file of any rate, channel count and sample width (via ``wave``)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        size = frames * channels * width
        w.writeframes((bytes(range(256)) * (size // 256 + 1))[:size])
    return path


def test_wav_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-32768, 32768, size=1000).astype(np.int16)
    x[:2] = [-32768, 32767]
    path = write_wav(tmp_path / "a.wav", x)
    y, rate = read_wav(path)
    assert rate == SPEECH_RATE and y.dtype == np.int16
    np.testing.assert_array_equal(y, x)
    # Floats: to_float is exact and write_wav inverts it; 1.0 saturates at 32767.
    write_wav(tmp_path / "b.wav", to_float(x))
    np.testing.assert_array_equal(read_wav(tmp_path / "b.wav")[0], x)
    write_wav(tmp_path / "c.wav", np.array([-1.0, -0.5, 0.0, 1.0]), rate=8000)
    y, rate = read_wav(tmp_path / "c.wav", rate=None)
    assert rate == 8000 and y.tolist() == [-32768, -16384, 0, 32767]
    assert to_float(np.array([-32768, 16384], np.int16)).tolist() == [-1.0, 0.5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "b.wav", "c.wav"]


def test_write_wav_refuses_to_overwrite(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.zeros(10, np.int16))
    with pytest.raises(ConfigError) as err:
        write_wav(path, np.ones(10, np.int16))
    assert "overwrite=True" in one_line(err)
    assert read_wav(path)[0].tolist() == [0] * 10  # untouched
    write_wav(path, np.ones(10, np.int16), overwrite=True)
    assert read_wav(path)[0].tolist() == [1] * 10
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temporary file left


@pytest.mark.parametrize(
    "samples, rate, error",
    [
        (np.zeros((2, 10), np.int16), 16000, DataError),
        (np.array([0.5, 1.5]), 16000, DataError),
        (np.array([0.5, np.nan]), 16000, DataError),
        (np.zeros(10, np.int32), 16000, DataError),
        (np.zeros(10, np.int16), 0, ConfigError),
        (np.zeros(10, np.int16), 16000.0, ConfigError),
    ],
)
def test_write_wav_bad_input_is_one_line_error(tmp_path, samples, rate, error):
    with pytest.raises(error) as err:
        write_wav(tmp_path / "a.wav", samples, rate)
    one_line(err)
    assert not (tmp_path / "a.wav").exists()


@pytest.mark.parametrize(
    "rate, channels, width, what",
    [
        (44100, 1, 2, "44100 Hz mono 16-bit PCM"),
        (16000, 2, 2, "16000 Hz stereo 16-bit PCM"),
        (16000, 1, 1, "16000 Hz mono 8-bit PCM"),
        (44100, 2, 3, "44100 Hz stereo 24-bit PCM"),
        (16000, 1, 4, "16000 Hz mono 32-bit PCM"),
    ],
)
def test_wav_of_another_format_is_one_line_error(tmp_path, rate, channels, width, what):
    path = write_pcm(tmp_path / "x.wav", rate, channels, width)
    with pytest.raises(DataError) as err:
        read_wav(path)
    message = one_line(err)
    assert f"{path} is {what}; ppgen's speech models need 16 kHz mono 16-bit PCM" in message
    assert f"`sox {path} -r 16000 -c 1 -b 16 {tmp_path / 'x-16k.wav'}`" in message


def test_a_wav_of_another_rate_is_read_when_any_rate_is_allowed(tmp_path):
    path = write_pcm(tmp_path / "x.wav", 44100, 1, 2)
    samples, rate = read_wav(path, rate=None)
    assert rate == 44100 and samples.shape == (100,)
    with pytest.raises(DataError, match="need 44.1 kHz mono"):
        read_wav(write_wav(tmp_path / "y.wav", samples), rate=44100)


def float_wav(rate=16000, channels=1, frames=10) -> bytes:
    """A 32-bit IEEE float WAV file (format 3), which ``wave`` cannot read."""
    data = np.zeros(frames * channels, "<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * 4 * channels, 4 * channels, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_float_wav_is_one_line_error_saying_what_it_is(tmp_path):
    path = tmp_path / "f.wav"
    path.write_bytes(float_wav(48000, 2))
    with pytest.raises(DataError) as err:
        read_wav(path)
    assert f"{path} is 48000 Hz stereo 32-bit float; ppgen's" in one_line(err)


def test_truncated_or_foreign_files_are_one_line_errors(tmp_path):
    good = write_wav(tmp_path / "good.wav", np.arange(1000, dtype=np.int16)).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good[:-100])
    with pytest.raises(DataError) as err:
        read_wav(cut)
    assert "truncated: its header announces 1000 samples but it holds 950" in one_line(err)
    for name, payload, what in [
        ("head.wav", good[:30], "is not a readable WAV file (it ends early)"),
        ("riff.wav", good[:8], "is not a readable WAV file (not a WAVE file)"),
        ("text.wav", b"hello, world", "is not a WAV file (no RIFF/WAVE header)"),
        ("avi.wav", b"RIFF\0\0\0\0AVI LIST", "is not a WAV file (no RIFF/WAVE header)"),
        ("empty.wav", b"", "is not a WAV file"),
    ]:
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DataError) as err:
            read_wav(tmp_path / name)
        assert f"{tmp_path / name} {what}" in one_line(err)
    with pytest.raises(DataError) as err:
        read_wav(tmp_path / "absent.wav")
    assert "cannot read" in one_line(err)


def test_to_float_takes_int16_only():
    with pytest.raises(DataError):
        to_float(np.zeros(3, np.int32))


# --- mu-law --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [256, 16, 2])
def test_mu_law_decode_then_encode_is_the_identity(channels):
    q = np.arange(channels)
    x = mu_law_decode(q, channels, dtype=np.float64)
    np.testing.assert_array_equal(mu_law_encode(x, channels), q)
    # float32 samples too (what the corpus and the models hold)
    np.testing.assert_array_equal(mu_law_encode(mu_law_decode(q, channels), channels), q)
    assert np.all(np.diff(x) > 0)  # strictly increasing
    assert x[0] == -1.0 and x[-1] == 1.0


@pytest.mark.parametrize("channels", [256, 16])
def test_mu_law_encode_rounds_to_the_nearest_level_in_the_companded_domain(channels):
    mu = channels - 1
    x = np.concatenate([np.linspace(-1, 1, 200_001), [-1e-9, 0.0, 1e-9]])
    q = mu_law_encode(x, channels)
    assert q.dtype == np.int32 and q.min() == 0 and q.max() == mu
    assert np.all(np.diff(q[:200_001]) >= 0)  # monotone
    f = np.sign(x) * np.log(1 + mu * np.abs(x)) / np.log(1 + mu)
    g = mu_law_decode(q, channels, dtype=np.float64)
    f_of_g = np.sign(g) * np.log(1 + mu * np.abs(g)) / np.log(1 + mu)
    # Levels are 2/mu apart in the companded domain: the code is the nearest one.
    assert np.abs(f - f_of_g).max() <= 1 / mu + 1e-12
    # ... so in the sample domain it is one of the two levels around x (the grid is not
    # uniform there: the nearest in f need not be the nearest in x).
    levels = mu_law_decode(np.arange(channels), channels, dtype=np.float64)
    above = np.searchsorted(levels, x).clip(1, mu)
    assert np.all((g == levels[above - 1]) | (g == levels[above]))


def test_mu_law_matches_the_formula():
    """The WaveNet paper's f, then torchaudio's quantisation floor((f + 1) / 2 mu + 0.5)."""
    mu = 255
    x = np.array([-1.0, -0.5, -0.01, -1e-4, 0.0, 1e-4, 0.01, 0.3, 0.999, 1.0])
    f = [np.copysign(np.log(1 + mu * abs(v)) / np.log(1 + mu), v) for v in x]
    expected = [int(np.floor((fv + 1) / 2 * mu + 0.5)) for fv in f]
    assert mu_law_encode(x).tolist() == expected
    assert mu_law_encode(np.array([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    q = np.array([0, 1, 64, 127, 128, 200, 255])
    y = 2 * q / mu - 1
    inverse = np.sign(y) * ((1 + mu) ** np.abs(y) - 1) / mu
    np.testing.assert_allclose(mu_law_decode(q, dtype=np.float64), inverse, rtol=1e-12)
    assert MU_LAW_CHANNELS == 256


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: mu_law_encode(np.array([0, 100], np.int16)), DataError),
        (lambda: mu_law_encode(np.array([0.5, 1.01])), DataError),
        (lambda: mu_law_encode(np.array([np.nan])), DataError),
        (lambda: mu_law_encode(np.zeros(3), channels=1), ConfigError),
        (lambda: mu_law_decode(np.array([0, 256])), DataError),
        (lambda: mu_law_decode(np.array([-1])), DataError),
        (lambda: mu_law_decode(np.array([0.5])), DataError),
    ],
)
def test_mu_law_bad_input_is_one_line_error(call, error):
    with pytest.raises(error) as err:
        call()
    one_line(err)


# --- the speech corpus ----------------------------------------------------------------------


def test_speech_splits_and_voices(shared_root):
    corpora = {s: load_speech(s, data_dir=shared_root) for s in SPEECH_SIZES}
    assert {s: len(c) for s, c in corpora.items()} == SPEECH_SIZES
    names = corpora["train"].voice_names
    assert len(names) == 6 and names == tuple(sorted(names))
    for c in corpora.values():
        assert c.voice_names == names and c.rate == SPEECH_RATE
        assert all(u.dtype == np.int16 and u.ndim == 1 for u in c.utterances)
    assert round(corpora["train"].seconds, 1) == 441.7 and round(corpora["test"].seconds, 1) == 55.2
    full, train, valid = corpora["train_full"], corpora["train"], corpora["valid"]
    np.testing.assert_array_equal(full.voices, np.concatenate([train.voices, valid.voices]))
    assert full.texts == train.texts + valid.texts
    # The transcript's first line, and its voice name (voice i mod 6, see the corpus README).
    assert train.texts[0].startswith("Let us kill him, and we'll have corn at our own price.")
    assert names[train.voices[0]] == "en-us" and names[train.voices[1]] == "en-gb"
    assert AUDIO_DATASETS == {"speech": load_speech}
    assert len(load_audio("speech", "test", data_dir=shared_root)) == 8


def test_speech_segments_on_the_corpus(shared_root):
    test = load_speech("test", data_dir=shared_root)
    ids, voices = test.segments(16000)
    assert ids.shape == (sum(len(u) // 16000 for u in test.utterances), 16000)
    assert ids.dtype == np.int32 and voices.dtype == np.int64 and voices.shape == (len(ids),)
    assert ids.min() >= 0 and ids.max() < 256
    np.testing.assert_array_equal(ids[0], mu_law_encode(to_float(test.utterances[0][:16000])))


def small_corpus() -> AudioCorpus:
    rng = np.random.default_rng(0)
    utterances = [rng.integers(-32768, 32768, n).astype(np.int16) for n in (10, 25, 3)]
    return AudioCorpus(
        utterances=utterances,
        rate=SPEECH_RATE,
        voices=np.array([1, 0, 1]),
        voice_names=("a", "b"),
        texts=("one", "two", "three"),
        name="small",
    )


@pytest.mark.parametrize(
    "hop, starts", [(None, [[0, 5], [0, 5, 10, 15, 20]]), (7, [[0], [0, 7, 14]])]
)
def test_segments_are_windows_of_each_utterance(hop, starts):
    corpus = small_corpus()
    ids, voices = corpus.segments(5, hop)
    codes = corpus.mu_law()
    expected = [codes[i][s : s + 5] for i in (0, 1) for s in starts[i]]
    np.testing.assert_array_equal(ids, np.stack(expected))
    assert voices.tolist() == [1] * len(starts[0]) + [0] * len(starts[1])
    assert corpus.seconds == 38 / SPEECH_RATE
    assert [c.dtype for c in codes] == [np.int32] * 3


@pytest.mark.parametrize("length, hop", [(1, None), (26, None), (5, 0)])
def test_segment_sizes_outside_the_utterances_are_config_errors(length, hop):
    with pytest.raises(ConfigError) as err:
        small_corpus().segments(length, hop)
    one_line(err)


def test_audio_corpus_checks_its_fields():
    good = small_corpus()
    for change in [
        {"voices": np.array([0, 1, 2])},
        {"voices": np.array([0, 1])},
        {"voices": np.array([0, 1, 1], np.int32)},
        {"texts": ("one",)},
        {"utterances": [np.zeros(3, np.float32)] * 3},
    ]:
        fields = {**good.__dict__, **change}
        with pytest.raises(DataError) as err:
            AudioCorpus(**fields)
        one_line(err)


def md5(path: pathlib.Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def make_speech(
    root: pathlib.Path, sizes=(("train", 2), ("valid", 1), ("test", 1))
) -> pathlib.Path:
    """A tiny corpus laid out like the real one (WAVs, transcripts.tsv, MD5SUMS)."""
    directory = root / "speech"
    lines = ["file\tsplit\tvoice\twords_per_minute\ttext"]
    number = 0
    for split, n in sizes:
        (directory / split).mkdir(parents=True)
        for _ in range(n):
            name = f"{split}/{number:04d}.wav"
            write_wav(directory / name, np.full(50 + number, number, np.int16))
            lines.append(f"{name}\t{split}\t{('v1', 'v0')[number % 2]}\t150\tline {number}")
            number += 1
    (directory / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    files = [*sorted(directory.rglob("*.wav")), directory / "transcripts.tsv"]
    sums = [f"{md5(p)}  ./{p.relative_to(directory)}" for p in files]
    (directory / "MD5SUMS").write_text("\n".join(sums) + "\n")
    return directory


def test_load_speech_on_a_small_corpus(tmp_path):
    make_speech(tmp_path)
    full = load_speech("train_full", data_dir=tmp_path)
    assert len(full) == 3 and full.voice_names == ("v0", "v1")
    assert full.voices.tolist() == [1, 0, 1] and full.texts == ("line 0", "line 1", "line 2")
    assert [u[0] for u in full.utterances] == [0, 1, 2] and len(full.utterances[2]) == 52
    assert load_speech("test", data_dir=tmp_path).voices.tolist() == [0]  # same voice names


def test_a_missing_speech_corpus_says_where_to_put_it(tmp_path):
    with pytest.raises(DataError) as err:
        load_speech("train", data_dir=tmp_path)
    message = one_line(err)
    assert str(tmp_path / "speech") in message and "no download" in message


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: d.joinpath("train/0001.wav").write_bytes(b"RIFF"), "train/0001.wav is corrupt"),
        (lambda d: d.joinpath("train/0001.wav").unlink(), "listed in MD5SUMS but missing"),
        (lambda d: shutil.copy(d / "train/0000.wav", d / "train/0009.wav"), "not listed"),
        (lambda d: d.joinpath("transcripts.tsv").write_text("x"), "transcripts.tsv is corrupt"),
        (lambda d: d.joinpath("MD5SUMS").write_text("abc\n"), "MD5SUMS line 1"),
    ],
)
def test_a_damaged_speech_corpus_is_one_line_error(tmp_path, damage, expected):
    damage(make_speech(tmp_path))
    with pytest.raises(DataError) as err:
        load_speech("train", data_dir=tmp_path)
    assert expected in one_line(err)


def test_a_speech_file_of_another_rate_is_refused(tmp_path):
    directory = make_speech(tmp_path)
    path = directory / "test" / "0003.wav"
    write_pcm(path, 22050, 1, 2)
    sums = (directory / "MD5SUMS").read_text().splitlines()
    sums = [f"{md5(path)}  ./test/0003.wav" if s.endswith("test/0003.wav") else s for s in sums]
    (directory / "MD5SUMS").write_text("\n".join(sums))
    with pytest.raises(DataError) as err:
        load_speech("test", data_dir=tmp_path)
    assert "0003.wav is 22050 Hz mono 16-bit PCM; ppgen's speech models need 16 kHz" in one_line(
        err
    )


@pytest.mark.parametrize("method", ["is_file", "read_bytes"])
def test_unreadable_data_are_one_line_errors(tmp_path, monkeypatch, method):
    """Permission errors (simulated: the tests may run as root) become DataErrors."""
    make_speech(tmp_path)
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("x")
    real = getattr(pathlib.Path, method)

    def refuse(path, *args, **kwargs):
        if tmp_path in path.parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, method, refuse)
    for load, what in [(load_shakespeare, "Tiny Shakespeare"), (load_speech, "the speech corpus")]:
        with pytest.raises(DataError) as err:
            load("test", data_dir=tmp_path)
        message = one_line(err)
        assert f"cannot read {what} (Permission denied: {tmp_path}" in message


# --- integer grey levels ------------------------------------------------------------------------


def test_pixel_levels_give_back_the_mnist_bytes(shared_root):
    test = load_mnist("test", data_dir=shared_root)
    k = pixel_levels(test.x)
    assert k.dtype == np.int32 and k.shape == (10_000, 784)
    raw = read_idx(shared_root / "mnist" / "t10k-images-idx3-ubyte.gz").reshape(10_000, 784)
    np.testing.assert_array_equal(k, raw)


def test_pixel_levels_of_the_digits():
    import sklearn.datasets

    images = sklearn.datasets.load_digits().images.reshape(-1, 64)
    x = np.concatenate([load_digits(s).x for s in ("train_full", "test")])
    k = pixel_levels(x, levels=17)
    assert k.max() == 16
    # The digits splits are a permutation of the images: compare the multisets of rows.
    assert sorted(map(bytes, k.astype(np.uint8))) == sorted(map(bytes, images.astype(np.uint8)))


@pytest.mark.parametrize(
    "x, kw, error",
    [
        (np.array([0.0, 0.5, 1.0], np.float32), {}, DataError),  # 0.5 is not k / 255
        (np.array([0.0, 1 / 255 + 1e-3, 1.0]), {}, DataError),  # noisy
        (np.array([0.0, 1.0, 1.0, 0.0], np.float32), {}, DataError),  # binarized
        (np.array([0.0, 2.0]), {}, DataError),
        (np.array([0.0, np.nan]), {}, DataError),
        (np.array([0, 255]), {}, DataError),  # already integers
        (np.array([0.0, 1.0]), {"levels": 1}, ConfigError),
    ],
)
def test_pixel_levels_refuse_data_off_the_grid(x, kw, error):
    with pytest.raises(error) as err:
        pixel_levels(x, **kw)
    one_line(err)


def test_pixel_levels_accept_binary_data_when_told():
    x = np.array([0.0, 1.0, 1.0], np.float32)
    assert pixel_levels(x, binary_ok=True).tolist() == [0, 255, 255]
    assert pixel_levels(np.array([0.0, 0.5, 1.0]), levels=3).tolist() == [0, 1, 2]


def test_read_wav_takes_file_like_paths(tmp_path):
    """``read_wav`` accepts str and PathLike alike."""
    path = write_wav(str(tmp_path / "a.wav"), np.arange(5, dtype=np.int16))
    np.testing.assert_array_equal(read_wav(str(path))[0], read_wav(path)[0])
