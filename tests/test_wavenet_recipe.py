"""The ``wavenet`` recipe through the command line: train on mu-law segments of the speech
corpus (with and without conditioning on the voice), eval (bits per audio sample, equal to
the model's own log-probabilities), a WAV of generated clips, the spectrogram picture, and
bad input as one line."""

import json
import math

import numpy as np
import pytest

from ppgen import runs
from ppgen.data import SPEECH_RATE, load_speech, mu_law_decode, read_wav, to_float
from ppgen.recipes.wavenet import WaveNetSampleOptions
from tests.cli_helpers import cli, one_line
from tests.test_charrnn_recipe import log_softmax_nats

TINY = [
    *("--layers", "3", "--residual-channels", "4", "--skip-channels", "8"),
    *("--segment-len", "256", "--max-utterances", "1", "--picture-seconds", "0.05"),
    *("--batch-size", "64", "--epochs", "1", "--quiet"),
]


@pytest.fixture(scope="module", params=[("pyro", "voice"), ("numpyro", "none")])
def trained(request, tmp_path_factory):
    backend, conditioning = request.param
    out = tmp_path_factory.mktemp(f"wavenet_{backend}") / "run"
    args = ("--backend", backend, "--global-conditioning", conditioning)
    code, stdout, err = cli("train", "wavenet", *args, *TINY, "--out", out)
    assert code == 0, err
    return out


def test_eval_is_the_models_nll_in_bits_per_sample(trained):
    for name in ("curves.png", "spectrogram.png"):
        assert (trained / name).stat().st_size > 0, name
    code, stdout, err = cli("eval", trained, "--json")
    assert code == 0, err
    out = json.loads(stdout.strip().splitlines()[-1])
    # The first test utterance, whole, scored from the network's logits in numpy.
    test = load_speech("test")
    codes = test.mu_law()[0].astype(np.int64)
    run = runs.load_trained(trained)
    context = None
    if run.config.options.global_conditioning == "voice":
        context = np.eye(len(test.voice_names), dtype=np.float32)[test.voices[:1]]
    logits = run.backend.inference.compute(run.model.net, codes[None], context)
    nats = log_softmax_nats(logits, codes[None])
    assert out["samples"] == len(codes) and out["utterances"] == 1 and out["exact"]
    np.testing.assert_allclose(out["test_nats_per_sample"], nats / len(codes), rtol=1e-5)
    np.testing.assert_allclose(
        out["test_bits_per_sample"], nats / len(codes) / math.log(2), rtol=1e-5
    )
    assert out["test_bits_per_sample"] < 8.5  # near uniform (8 bits) after a few steps


def test_sample_writes_a_16khz_wav_of_the_decoded_clips(trained, tmp_path):
    path = tmp_path / "clips.wav"
    code, stdout, err = cli("sample", trained, "-n", "2", "--seconds", "0.01", "--out", path)
    assert code == 0, err
    assert stdout.strip() == str(path)
    samples, rate = read_wav(path)
    assert rate == SPEECH_RATE and len(samples) == 160 + 4000 + 160
    run = runs.load_trained(trained)
    codes = runs.sample(run, 2, 0, WaveNetSampleOptions(seconds=0.01))
    assert codes.shape == (2, 160) and codes.min() >= 0 and codes.max() <= 255
    expected = mu_law_decode(codes)
    np.testing.assert_allclose(to_float(samples[:160]), expected[0], atol=1 / 32768)
    np.testing.assert_allclose(to_float(samples[-160:]), expected[1], atol=1 / 32768)
    np.testing.assert_array_equal(samples[160:4160], 0)


def test_voice_options(trained):
    run = runs.load_trained(trained)
    if run.config.options.global_conditioning == "none":
        line = one_line(cli("sample", trained, "--voice", "en-gb", "--seconds", "0.01"))
        assert "not conditioned on the voice" in line
        return
    line = one_line(cli("sample", trained, "--voice", "nobody", "--seconds", "0.01"))
    assert "unknown voice 'nobody'" in line and "en-gb" in line
    # the voice changes the draw: the conditioning reaches the sampler
    a = runs.sample(run, 1, 0, WaveNetSampleOptions(seconds=0.02, voice="en-gb"))
    b = runs.sample(run, 1, 0, WaveNetSampleOptions(seconds=0.02, voice="en-us+m3"))
    assert a.shape == b.shape == (1, 320) and not np.array_equal(a, b)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--seconds", "0"), "--seconds: expected a positive value"),
        (("--seconds", "31"), "--seconds must be in (0, 30]"),
        (("--temperature", "0.5"), "--temperature not used by a wavenet run"),
        (("--bogus",), "unrecognized arguments: --bogus"),
    ],
)
def test_bad_sample_input_is_one_line(trained, args, needle):
    assert needle in one_line(cli("sample", trained, *args))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--global-conditioning", "speaker"), "invalid choice: 'speaker'"),
        (("--kernel-size", "1"), "--kernel-size must be at least 2"),
        (("--segment-len", "1"), "--segment-len must be at least 2"),
        (("--dataset", "shakespeare"), "invalid choice: 'shakespeare'"),
        (("--picture-seconds", "60"), "--picture-seconds must be in (0, 30]"),
    ],
)
def test_bad_training_input_is_one_line(tmp_path, args, needle):
    line = one_line(cli("train", "wavenet", "--out", tmp_path / "r", "--quiet", *args))
    assert needle in line


def test_a_segment_longer_than_every_utterance_is_one_line(tmp_path):
    args = ("--segment-len", "10000000", "--max-utterances", "1")
    line = one_line(cli("train", "wavenet", "--out", tmp_path / "r", "--quiet", *args))
    assert "longer" in line


@pytest.mark.parametrize(("model", "lr"), [("wavenet", 1e-2), ("charrnn", 5e-3)])
def test_measured_rate_comes_with_its_schedule(model, lr):
    """The recipes' default rates were measured on a cosine schedule (docs/RESULTS.md), so a
    run left at the defaults decays on a cosine; an explicit schedule or rate still wins."""
    default = runs.make_config(model)
    assert (default.lr, default.lr_schedule) == (lr, "cosine")
    chosen = runs.make_config(model, lr_schedule="constant", lr=1e-3)
    assert (chosen.lr, chosen.lr_schedule) == (1e-3, "constant")
