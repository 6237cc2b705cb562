"""The autoregressive image recipes (``fvsbn``, ``nade``, ``made``, ``pixelcnn``) end to end
through the command line, on scikit-learn's 8x8 digits: the figures ``ppgen eval`` reports
are the model's exact log-likelihood, and bad settings are refused in one line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import logsumexp

from ppgen import runs
from tests.cli_helpers import cli, one_line

FAST = ["--epochs", "1", "--batch-size", "100", "--quiet", "--dataset", "digits"]

CASES = {
    "fvsbn": ("pyro", []),
    "nade": ("numpyro", ["--hidden", "16"]),
    "made": ("numpyro", ["--hidden", "16", "--masks", "3"]),
    "pixelcnn-gated": (
        "pyro",
        ["--channels", "4", "--layers", "2", "--likelihood", "categorical", "--conditional"],
    ),  # fmt: skip
    "pixelcnn-plain": (
        "numpyro",
        [
            "--variant",
            "pixelcnn",
            "--channels",
            "4",
            "--layers",
            "1",
            "--likelihood",
            "logistic_mixture",
            "--components",
            "2",
        ],
    ),  # fmt: skip
}


def direct_log_px(run):
    """log p(x) of every test row straight from the trained network: ``head.log_prob`` of
    ``net(x)``, summed; the mask-set ensemble for a MADE with several sets."""
    net, head = run.model.net, run.model.head
    test = run.data.test
    x, context = test if isinstance(test, tuple) else (test, None)
    compute = run.backend.inference.compute

    def log_px(xs, ctx, k=None):
        values = head.values(xs).reshape(len(xs), *net.event_shape)
        out = net(values, ctx) if k is None else net(values, ctx, mask_index=k)
        return head.log_prob(out, values).reshape(len(xs), -1).sum(-1)

    masks = getattr(net, "num_masks", 1)
    if masks == 1:
        return np.asarray(compute(log_px, x, context), np.float64)
    each = [
        np.asarray(compute(lambda a, c, k=k: log_px(a, c, k), x, context)) for k in range(masks)
    ]
    return logsumexp(np.stack(each).astype(np.float64), axis=0) - math.log(masks)


def naive_completions(run, n, seed):
    """The recipe's completions drawn by the naive sampler (a full pass per pixel), from
    the noise the recipe draws: the reference its cached completions must equal."""
    net, head = run.model.net, run.model.head
    test = run.data.test
    x, context = (test[0][:n], test[1][:n]) if isinstance(test, tuple) else (test[:n], None)
    events = x.reshape(len(x), *net.event_shape)
    noise = np.random.default_rng(seed).uniform(
        1e-12, 1.0, (len(x), *net.event_shape, *head.noise_shape)
    )
    ar = run.backend.models.ar
    done = run.backend.inference.compute(
        lambda nz, xx, c: ar.naive_sample(net, nz, head, c, start=32, x=xx), noise, events, context
    )
    return run.recipe._images(run, np.asarray(done).reshape(len(x), -1))


@pytest.mark.parametrize("case", sorted(CASES))
def test_trains_evaluates_samples_and_draws(tmp_path, case):
    backend_name, extra = CASES[case]
    model = case.split("-")[0]
    out = tmp_path / "run"
    code, _, err = cli("train", model, "--backend", backend_name, *FAST, *extra, "--out", out)
    assert code == 0, err
    for name in ("samples.png", "completions.png", "receptive_field.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name  # MADE's mask set 0: the raster order
    code, stdout, err = cli("eval", out, "--json")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    run = runs.load_trained(out)
    expected = -direct_log_px(run)
    np.testing.assert_allclose(result["test_nll"], expected.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["test_bits_per_dim"], expected.mean() / (64 * math.log(2)),
                               rtol=1e-5)  # fmt: skip
    assert result["exact"] and result["n"] == len(expected)
    original, given, done = run.recipe.completions(run, n=3, seed=2)
    np.testing.assert_array_equal(done[:, :32], original[:, :32])  # the top half is kept
    np.testing.assert_array_equal(given[:, 32:], 0.0)
    np.testing.assert_array_equal(done, naive_completions(run, n=3, seed=2))
    x = runs.sample(run, 6, seed=1)
    assert x.shape == (6, 64) and x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(x, runs.sample(run, 6, seed=1))
    code, stdout, err = cli("sample", out, "-n", "9")
    assert code == 0, err
    assert stdout.strip() == str(out / "samples.png")


def test_made_ensemble_passes_the_test_set_once_per_mask_set(tmp_path):
    """``ppgen eval`` of a MADE with K mask sets runs the network over the test set K times
    (once per set, no extra pass), and reports as its one-mask figure the mean over the
    sets of each set's exact test NLL."""
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "made", "--backend", "pyro", *FAST, "--hidden", "16", "--masks", "3",
        "--out", out,
    )  # fmt: skip
    assert code == 0, err
    run = runs.load_trained(out)
    net, head, x = run.model.net, run.model.head, run.data.test
    rows = []
    hook = net.register_forward_hook(lambda module, args, output: rows.append(len(args[0])))
    try:
        result = run.recipe.evaluate(run, progress=False)
    finally:
        hook.remove()
    assert sum(rows) == 3 * len(x)
    compute = run.backend.inference.compute
    each = [
        compute(lambda a, k=k: head.log_prob(net(head.values(a), mask_index=k), a).sum(-1), x)
        for k in range(3)
    ]
    np.testing.assert_allclose(result["test_nll_one_mask"], -np.mean(each), rtol=1e-6)
    np.testing.assert_allclose(result["test_nll"], -np.mean(direct_log_px(run)), rtol=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_made_direct_connections_default_on_and_old_runs_keep_none(tmp_path, backend):
    """A new ``made`` run has Germain et al.'s direct input-to-output connections (trained:
    no longer zero); ``--direct none`` and a run stored before the option existed build the
    plain masked MLP, with no direct weights."""
    from ppgen.config import RunConfig, make_config

    out = tmp_path / "run"
    code, _, err = cli("train", "made", "--backend", backend, *FAST, "--hidden", "16",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    run = runs.load_trained(out)
    assert run.config.options.direct == "output"
    weights = run.model.net.get_weights()
    assert np.abs(np.asarray(weights["direct.weight"])).max() > 0
    plain = make_config("made", dataset="digits", direct="none")
    assert plain.options.direct == "none"
    raw = json.loads(make_config("made", dataset="digits").to_json())
    del raw["options"]["direct"]
    stored = RunConfig.from_json(raw)
    assert stored.options.direct == "none"
    code, _, err = cli("train", "made", "--backend", backend, *FAST, "--hidden", "16",
                       "--direct", "none", "--out", tmp_path / "plain")  # fmt: skip
    assert code == 0, err
    assert "direct.weight" not in runs.load_trained(tmp_path / "plain").model.net.get_weights()


def test_receptive_fields_show_the_order_and_the_blind_spot(tmp_path):
    """The recipe's receptive-field maps of a trained plain PixelCNN miss earlier pixels up
    and to the right (the blind spot); the gated one's cover every earlier pixel in its
    field; neither ever depends on a later pixel."""
    from ppgen.recipes.ar_images import receptive_fields

    maps = {}
    for variant in ("pixelcnn", "gated"):
        out = tmp_path / variant
        # The config `ppgen train pixelcnn --variant VARIANT --backend numpyro FAST
        # --channels 4 --layers 4` builds, trained by runs.train: the command line's
        # pictures afterwards (tested above) play no part in the maps.
        config = runs.make_config(
            "pixelcnn", variant=variant, backend="numpyro", dataset="digits", epochs=1,
            batch_size=100, channels=4, layers=4,
        )  # fmt: skip
        runs.train(config, out, progress=False)
        pixel = (4, 3)
        maps[variant] = receptive_fields(runs.load_trained(out), (pixel,))[1][0]
    later = np.arange(64).reshape(8, 8) >= 4 * 8 + 3
    for variant, dep in maps.items():
        assert not dep[later].any(), variant
    above_right = maps["gated"].astype(bool) & ~maps["pixelcnn"].astype(bool)
    assert above_right[:4, 4:].any()  # pixels above and to the right: the blind spot
    assert not (maps["pixelcnn"].astype(bool) & ~maps["gated"].astype(bool)).any()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pixelcnn", "--kernel-size", "4"], "--kernel-size must be odd"),
        (["pixelcnn", "--variant", "pixelcnn", "--conditional"], "--conditional needs"),
        (["fvsbn", "--dataset", "moons"], "moons"),
        (["fvsbn", "--likelihood", "categorical"], "unrecognized arguments"),
        (["made", "--masks", "0"], "positive"),
        (["made", "--agnostic", "connectivity"], "--masks is 1"),
        (["made", "--direct", "full"], "invalid choice: 'full'"),
        (["pixelcnn", "--components", "3"], "--components sizes the logistic mixture"),
        (
            ["pixelcnn", "--likelihood", "categorical", "--binarize", "dynamic"],
            "--binarize dynamic binarizes the pixels",
        ),  # fmt: skip
    ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, args, message):
    line = one_line(cli("train", *args, "--out", tmp_path / "run"))
    assert message in line
    assert not (tmp_path / "run").exists()


def test_draws_too_large_for_memory_are_refused_before_they_start():
    """``runs.sample`` asks the recipe first: more images than the cached samplers hold, or
    more audio than ppgen draws at once, is one ``ConfigError``, not an out-of-memory crash
    (``ppgen sample -n 100000000`` used to allocate 25 GB and print a traceback)."""
    from ppgen.errors import ConfigError
    from ppgen.recipes import get_recipe
    from ppgen.recipes.wavenet import WaveNetSampleOptions

    fvsbn, wavenet = get_recipe("fvsbn"), get_recipe("wavenet")
    fvsbn.check_sample_count(fvsbn.max_samples)
    for bad in (fvsbn.max_samples + 1, 0, -3, True, 2.0):
        with pytest.raises(ConfigError) as err:
            fvsbn.check_sample_count(bad)
        assert "\n" not in str(err.value)
    wavenet.check_sample_count(3, WaveNetSampleOptions(seconds=10.0))
    with pytest.raises(ConfigError, match="5000 clips of 0.01 s are 50 s of audio"):
        wavenet.check_sample_count(5000, WaveNetSampleOptions(seconds=0.01))
