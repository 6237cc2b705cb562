"""Sampling a trained run from its directory alone: ``runs.load_trained(run, data=False)``
builds the model from ``config.json`` and the data's shapes (``Recipe.shapes``), so a run
copied to a machine without the corpus still draws, the same samples as with the data;
evaluating still reads the data and says in one line where to put them."""

import dataclasses
import shutil

import numpy as np
import pytest

from ppgen import data as ppdata
from ppgen import runs
from ppgen.errors import ConfigError, DataError
from ppgen.recipes import get_recipe
from ppgen.recipes.base import IMAGE_SHAPES
from tests.cli_helpers import cli, one_line

# Tiny runs, one per family whose data are files under $PPGEN_DATA (digits and the toy
# densities need none), on both backends between them; (model, settings, sample options).
RUNS = {
    "charrnn": (
        "charrnn",
        dict(backend="numpyro", hidden=8, layers=1, seq_len=16, max_chars=1000, batch_size=16),
        {"length": 12, "prompt": "Th"},
    ),
    "wavenet": (
        "wavenet",
        dict(
            backend="pyro",
            layers=2,
            residual_channels=4,
            skip_channels=8,
            segment_len=128,
            max_utterances=1,
            batch_size=64,
            global_conditioning="voice",
        ),  # fmt: skip
        {"seconds": 0.01},
    ),
    "fvsbn": ("fvsbn", dict(backend="numpyro", dataset="mnist", batch_size=2000), None),
    "vae": (
        "vae",
        dict(backend="pyro", dataset="mnist", latent=2, hidden=(8,), batch_size=2000),
        None,
    ),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Every run of ``RUNS``, trained one epoch on the real data, by name."""
    out = {}
    for name, (model, settings, _) in RUNS.items():
        out[name] = tmp_path_factory.mktemp(name) / "run"
        runs.train(runs.make_config(model, epochs=1, **settings), out[name], progress=False)
    return out


def _offline(*args, **kwargs):
    raise OSError("offline (test)")


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """``PPGEN_DATA`` names an empty directory, and nothing is downloaded."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("PPGEN_DATA", str(empty))
    monkeypatch.setattr("ppgen.data.mnist._fetch", _offline)
    monkeypatch.setattr("ppgen.data.text._fetch", _offline)
    return empty


def _options(name):
    options = RUNS[name][2]
    return None if options is None else get_recipe(RUNS[name][0]).sample_options(**options)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_run_samples_without_its_data_as_with_it(trained, name, request, tmp_path):
    run_dir, options = trained[name], _options(name)
    with_data = runs.sample(runs.load_trained(run_dir), 3, seed=5, options=options)

    request.getfixturevalue("no_data")  # from here on, the data are gone
    with pytest.raises(DataError, match="not found"):
        runs.load_trained(run_dir)
    run = runs.load_trained(run_dir, data=False)
    assert run.data.stand_in and run.data.test is None
    without = runs.sample(run, 3, seed=5, options=options)
    np.testing.assert_array_equal(without, with_data)

    # What `ppgen sample` writes next: the recipe's file, from the run's config alone.
    path = run.recipe.save_samples(run, without, tmp_path / f"s{run.recipe.sample_suffix}")
    assert path.stat().st_size > 0

    # Evaluating and pictures need the data: refused on a run loaded without them.
    with pytest.raises(ConfigError, match="loaded without them"):
        runs.evaluate(run)
    with pytest.raises(ConfigError, match="loaded without them"):
        runs.save_pictures(run, tmp_path / "pictures")
    if hasattr(run.recipe, "completions"):  # the image AR families' own picture
        with pytest.raises(ConfigError, match="loaded without them") as err:
            run.recipe.completions(run)
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_eval_without_the_data_is_still_one_line(trained, name, no_data):
    line = one_line(cli("eval", trained[name]))
    assert "not found" in line and str(no_data) in line, line


def test_wavenet_stores_its_voices_and_checks_them(trained):
    config = runs.load_config(trained["wavenet"])
    assert config.options.voices == ppdata.load_audio("speech", "test").voice_names
    with pytest.raises(ConfigError, match="stored voices"):
        dataclasses.replace(config.options, voices=("a", "a"))


def test_runs_stored_without_what_sampling_needs_read_the_data(trained, no_data, tmp_path):
    """A charrnn config without its vocabulary, or a voice-conditioned wavenet's without its
    voices (as written before they were stored), is built from the data: without them, the
    one-line data-not-found error."""
    for name, option in (("charrnn", "vocabulary"), ("wavenet", "voices")):
        old_dir = shutil.copytree(trained[name], tmp_path / name)
        config = runs.load_config(old_dir)
        options = dataclasses.replace(config.options, **{option: None})
        old = dataclasses.replace(config, options=options)
        assert config.recipe.shapes(old) is None
        (old_dir / "config.json").write_text(old.to_json())
        with pytest.raises(DataError, match="not found"):
            runs.load_trained(old_dir, data=False)


def test_image_shapes_are_the_loaders():
    for name, (shape, classes) in IMAGE_SHAPES.items():
        test = ppdata.load_dataset(name, "test")
        assert (test.image_shape, test.num_classes) == (shape, classes)
    assert set(IMAGE_SHAPES) == set(ppdata.IMAGE_DATASETS)


@pytest.mark.parametrize("family", ["fvsbn", "charrnn", "wavenet"])
def test_ppgen_sample_needs_no_data(trained, no_data, tmp_path, family):
    """``ppgen sample`` on a run copied without its corpus (``PPGEN_DATA`` empty)."""
    suffix = {"fvsbn": ".png", "charrnn": ".txt", "wavenet": ".wav"}[family]
    extra = ("--seconds", "0.01") if family == "wavenet" else ("--length", "5")
    extra = () if family == "fvsbn" else extra
    out = tmp_path / f"s{suffix}"
    code, _, err = cli("sample", trained[family], "-n", "2", "--out", out, *extra)
    assert code == 0, err
    assert out.stat().st_size > 0


# Families whose data need no files (digits ships with scikit-learn): their stand-ins
# must still build the very model the checkpoint holds.
DIGITS = {
    "pixelcnn": dict(
        backend="pyro", channels=2, layers=1, likelihood="categorical", conditional=True
    ),
    "made": dict(backend="numpyro", hidden=(16,), masks=2),
    "flow": dict(backend="pyro", flow="glow", layers=1, hidden=(4,)),
    "m2": dict(backend="pyro", labels=50, latent=2, hidden=(8,)),
    "m1": dict(backend="numpyro", labels=50, latent=3, hidden=(8,)),
}


@pytest.mark.parametrize("model", ["pixelcnn", "made", "flow", "m2", "m1m2"])
def test_stand_ins_build_the_checkpoints_model(model, tmp_path):
    def train(model, **settings):
        out = tmp_path / model
        config = runs.make_config(model, dataset="digits", epochs=1, batch_size=100, **settings)
        runs.train(config, out, progress=False)
        return out

    if model == "m1m2":
        m1 = train("m1", **DIGITS["m1"])
        run_dir = train("m1m2", backend="pyro", labels=50, latent=2, hidden=(8,), m1_run=str(m1))
    else:
        run_dir = train(model, **DIGITS[model])
    with_data = runs.sample(runs.load_trained(run_dir), 4, seed=1)
    run = runs.load_trained(run_dir, data=False)
    assert run.data.stand_in
    np.testing.assert_array_equal(runs.sample(run, 4, seed=1), with_data)
