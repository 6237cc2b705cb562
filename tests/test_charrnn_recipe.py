"""The ``charrnn`` recipe through the command line: train on Tiny Shakespeare windows, eval
(nats and bits per character, equal to the model's own log-probabilities), sample with a
prompt and a temperature, the vocabulary stored with the run, and bad input as one line."""

import json
import math

import numpy as np
import pytest
from scipy.special import log_softmax

from ppgen import runs
from ppgen.data import load_text
from ppgen.errors import DataError
from ppgen.recipes.charrnn import score_text
from tests.cli_helpers import cli, one_line

TINY = [
    *("--hidden", "8", "--layers", "1", "--seq-len", "16", "--max-chars", "1000"),
    *("--batch-size", "16", "--epochs", "1", "--quiet"),
]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """One tiny run per backend (the same seed: the same initial weights)."""
    out = {}
    for name in ("pyro", "numpyro"):
        out[name] = tmp_path_factory.mktemp(f"charrnn_{name}") / "run"
        code, stdout, err = cli("train", "charrnn", "--backend", name, *TINY, "--out", out[name])
        assert code == 0, err
        seq_len = json.loads((out[name] / "config.json").read_text())["options"]["seq_len"]
        # the training loss is per window, and the summary says so (eval: per character)
        assert f"nats per {seq_len}-character window" in stdout
    return out


@pytest.fixture(params=["pyro", "numpyro"])
def trained(request, run_dirs):
    return run_dirs[request.param]


def log_softmax_nats(logits, ids):
    """-sum log p of ``ids`` under ``logits (..., V)``, in numpy float64."""
    log_p = log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return -float(np.take_along_axis(log_p, ids[..., None].astype(np.int64), -1).sum())


def test_the_run_stores_the_vocabulary_and_eval_is_the_models_nll(trained):
    config = json.loads((trained / "config.json").read_text())
    vocabulary = load_text("shakespeare", "test").vocabulary
    assert config["options"]["vocabulary"] == "".join(vocabulary.chars)
    assert (trained / "curves.png").stat().st_size > 0
    code, stdout, err = cli("eval", trained, "--json")
    assert code == 0, err
    out = json.loads(stdout.strip().splitlines()[-1])
    # The whole (sliced) validation text: 62 windows of 16 and a tail of 8 characters,
    # scored from the network's logits in numpy (each window from the start state).
    ids = load_text("shakespeare", "test").ids[:1000].astype(np.int64)
    run = runs.load_trained(trained)
    compute = run.backend.inference.compute
    windows = ids[:992].reshape(62, 16)
    nats = log_softmax_nats(compute(run.model.net, windows), windows)
    nats += log_softmax_nats(compute(run.model.net, ids[None, 992:]), ids[None, 992:])
    assert out["chars"] == 1000 and out["windows"] == 63 and out["exact"]
    np.testing.assert_allclose(out["test_nats_per_char"], nats / 1000, rtol=1e-5)
    np.testing.assert_allclose(out["test_bits_per_char"], nats / 1000 / math.log(2), rtol=1e-5)
    # --limit N: the first N windows only
    code, stdout, err = cli("eval", trained, "--json", "--limit", "2")
    assert code == 0, err
    out = json.loads(stdout.strip().splitlines()[-1])
    expected = log_softmax_nats(compute(run.model.net, windows[:2]), windows[:2]) / 32
    assert out["chars"] == 32
    np.testing.assert_allclose(out["test_nats_per_char"], expected, rtol=1e-5)


def test_sample_writes_and_prints_text_that_continues_the_prompt(trained, tmp_path):
    path = tmp_path / "s.txt"
    args = ("sample", trained, "-n", "2", "--length", "30", "--prompt", "ROMEO:")
    code, stdout, err = cli(*args, "--temperature", "0.7", "--out", path)
    assert code == 0, err
    text = path.read_text()
    assert text.strip() in stdout and stdout.strip().endswith(str(path))
    samples = text.split("--- sample ")[1:]
    assert len(samples) == 2
    for s in samples:
        body = s.split("---\n", 1)[1].rstrip("\n")
        assert body.startswith("ROMEO:") and len(body) == 36
    # the same seed draws the same text; the default count is the recipe's (3)
    code, _, err = cli(*args, "--temperature", "0.7", "--out", tmp_path / "t.txt")
    assert code == 0, err
    assert (tmp_path / "t.txt").read_text() == text
    code, _, err = cli("sample", trained, "--length", "5", "--out", tmp_path / "u.txt")
    assert code == 0, err
    assert (tmp_path / "u.txt").read_text().count("--- sample ") == 3


def test_near_zero_temperature_is_greedy_decoding(trained):
    """At T = 1e-4 the Gumbel noise cannot beat a logit gap: each character is the argmax
    of the network's logits given the prompt and the characters drawn so far."""
    from ppgen.recipes.charrnn import CharRNNSampleOptions

    run = runs.load_trained(trained)
    x = runs.sample(run, 1, 3, CharRNNSampleOptions(temperature=1e-4, prompt="AB", length=6))[0]
    compute = run.backend.inference.compute
    vocabulary = load_text("shakespeare", "test").vocabulary
    assert vocabulary.decode(x[:2]) == "AB"
    for t in range(2, 8):
        logits = np.asarray(compute(run.model.net, x[None, : t + 1]))[0, t]
        assert x[t] == int(np.argmax(logits))


def test_score_text_uses_the_trained_vocabulary(trained):
    run = runs.load_trained(trained)
    score = score_text(run, "First Citizen:\nBefore we proceed")
    assert score["chars"] == 32 and score["nats_per_char"] > 0
    with pytest.raises(DataError, match="outside the vocabulary.*'é'"):
        score_text(run, "café")


def test_a_stored_vocabulary_that_misses_characters_of_the_text_is_one_line(trained, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    config = json.loads((copy / "config.json").read_text())
    config["options"]["vocabulary"] = config["options"]["vocabulary"].replace("z", "")
    (copy / "config.json").write_text(json.dumps(config))
    line = one_line(cli("eval", copy))
    assert "outside the vocabulary" in line and "'z'" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--temperature", "0"), "--temperature: expected a positive value"),
        (("--temperature", "-1"), "--temperature: expected a positive value"),
        (("--temperature", "nan"), "--temperature: expected a positive value"),
        (("--temperature", "1e-45"), "--temperature must be a number from 1e-06 to 1e+06"),
        (("-n", "300", "--length", "500"), "300 samples of 500 characters are 150000 in all"),
        (("-n", "20000"), "more than the 10000 charrnn draws at once"),
        (("--prompt", "naïve €"), "2 character(s) outside the vocabulary"),
        (("--length", "200000"), "longer than the 100000"),
        (("--seconds", "1"), "--seconds not used by a charrnn run"),
        (("--bogus", "1"), "unrecognized arguments: --bogus"),
    ],
)
def test_bad_sample_input_is_one_line(trained, args, needle):
    assert needle in one_line(cli("sample", trained, *args))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--seq-len", "1"), "--seq-len must be at least 2"),
        (("--max-chars", "10", "--seq-len", "16"), "shorter than one window"),
        (("--dataset", "mnist"), "invalid choice: 'mnist'"),
        (("--embedding", "-2"), "expected a value >= 0"),
        (("--vocabulary", "abc"), "unrecognized arguments: --vocabulary"),
    ],
)
def test_bad_training_input_is_one_line(tmp_path, args, needle):
    line = one_line(cli("train", "charrnn", "--out", tmp_path / "r", "--quiet", *args))
    assert needle in line


def test_the_backends_score_and_sample_alike_on_the_same_weights(run_dirs):
    """The numpyro run given the pyro run's weights: the same test figure (float32) and,
    from the same seed (numpy noise), the same text."""
    from ppgen.recipes.charrnn import CharRNNSampleOptions

    pyro_run, numpyro_run = (runs.load_trained(run_dirs[b]) for b in ("pyro", "numpyro"))
    numpyro_run.model.set_weights(pyro_run.model.get_weights())
    a, b = (runs.evaluate(r, progress=False) for r in (pyro_run, numpyro_run))
    np.testing.assert_allclose(a["test_nats_per_char"], b["test_nats_per_char"], rtol=1e-5)
    options = CharRNNSampleOptions(prompt="KING", length=40, temperature=0.9)
    np.testing.assert_array_equal(
        runs.sample(pyro_run, 2, 5, options), runs.sample(numpyro_run, 2, 5, options)
    )
