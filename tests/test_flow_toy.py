"""benchmarks/flow_toy.py: its zuko and flowjax flows are ppgen's flows (the same function on
the same weights), its quick mode runs end to end, and it says how to install the peers.

zuko and flowjax are benchmark-only (the ``bench`` extra): the tests that need them are
skipped where they are not installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load_flow_toy():
    spec = importlib.util.spec_from_file_location("flow_toy", BENCH / "flow_toy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ft():
    return load_flow_toy()


def needs_peers():
    pytest.importorskip("zuko")
    pytest.importorskip("flowjax")


def random_layout(ft, flow: str, rng: np.random.Generator):
    """Random conditioner weights (last layers too: at init they are zero) in the layout."""
    return [
        [(0.3 * rng.standard_normal(w.shape), 0.3 * rng.standard_normal(b.shape)) for w, b in layer]
        for layer in ft.zuko_weights(ft.zuko_flow(flow, 0))
    ]


@pytest.mark.slow
@pytest.mark.parametrize("flow", ["realnvp", "maf", "nsf"])
def test_all_four_libraries_compute_the_same_flow_on_the_same_weights(ft, flow, float64):
    needs_peers()
    import paramax
    import torch

    from ppgen.models import numpyro as models_j
    from ppgen.models import pyro as models_t

    rng = np.random.default_rng(1)
    weights = random_layout(ft, flow, rng)
    # Inside and outside the spline's [-5, 5], on its edges, and far out (identity tails).
    x = np.concatenate(
        [
            2.0 * rng.standard_normal((300, 2)),
            30.0 * rng.standard_normal((30, 2)),
            [[5.0, -5.0], [-5.0, 4.999], [1e4, -1e4], [0.0, 0.0]],
        ]
    )
    zuko, fj = ft.zuko_flow(flow, 0), ft.flowjax_flow(flow, 0)
    if flow != "nsf":  # zeroed last layers: a fresh affine flow is the identity
        base = -0.5 * (x**2).sum(1) - np.log(2 * np.pi)
        fresh = zuko().log_prob(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(fresh, base, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(paramax.unwrap(fj).log_prob(x)), base, rtol=1e-12)
    zuko = ft.set_zuko_weights(zuko, weights)
    log_p = {"zuko": zuko().log_prob(torch.from_numpy(x)).detach().numpy()}
    fj = ft.set_flowjax_weights(fj, weights, flow)
    log_p["flowjax"] = np.asarray(paramax.unwrap(fj).log_prob(x))
    for name, models in (("pyro", models_t), ("numpyro", models_j)):
        built = models.build_flow(flow, (2,), layers=ft.LAYERS, hidden=ft.HIDDEN, seed=0)
        built = built.set_weights(ft.layout_to_ppgen(weights, built.get_weights()))
        density = models.FlowDensity((2,), built)
        if name == "pyro":
            with torch.no_grad():
                log_p[name] = density.log_prob(torch.from_numpy(x)).numpy()
        else:
            log_p[name] = np.asarray(density.log_prob(x))
    ref = log_p["pyro"]
    assert np.all(np.isfinite(ref))
    assert np.ptp(ref) > 1.0  # the weights make a flow that is far from the identity
    for name, value in log_p.items():
        np.testing.assert_allclose(value, ref, rtol=1e-9, atol=1e-9, err_msg=name)


def test_layout_round_trips_ppgen_weights(ft):
    from ppgen.models import pyro as models_t

    built = models_t.build_flow("maf", (2,), layers=3, hidden=(8, 8), seed=4)
    weights = built.get_weights()
    back = ft.layout_to_ppgen(ft.ppgen_to_layout(weights), weights)
    assert back.keys() == weights.keys()
    for key in weights:
        np.testing.assert_array_equal(back[key], weights[key])
    layout = ft.ppgen_to_layout(weights)
    assert len(layout) == 3  # data side first: ppgen's last layer
    np.testing.assert_array_equal(layout[0][0][0], weights["layers.2.made.layers.0.weight"])


@pytest.mark.slow
def test_quick_mode_pyro_matches_zuko_step_for_step(ft, tmp_path, monkeypatch):
    """ppgen-pyro (Trainer, ELBO, empty guide) and zuko start from the same weights, see the
    same minibatches and run the same (fused) Adam: the same flow comes out, up to float32
    rounding; the JSON has the benchmark's keys."""
    needs_peers()
    import _common  # the benchmark's own module, on sys.path once flow_toy is loaded

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    monkeypatch.setattr(ft, "single_threaded", lambda: None)  # leave pytest's threads be
    result = ft.main(["--quick", "--flows", "nsf", "--libraries", "pyro,zuko"])
    assert (tmp_path / "flow_toy_quick.json").exists()
    assert set(result) >= {"nll_gap_max", "pyro_vs_zuko", "cells", "setting", "hardware"}
    assert [(c["density"], c["flow"]) for c in result["cells"]] == [("two_moons", "nsf")]
    for cell in result["cells"]:
        assert abs(cell["nll"]["pyro"] - cell["nll"]["zuko"]) < 1e-3, cell
        assert cell["ms_per_step"]["pyro"] > 0
    gap = result["nll_gap_max"]["pyro"]
    assert gap == max(c["nll"]["pyro"] - c["nll"]["zuko"] for c in result["cells"])
    assert result["pyro_vs_zuko"] > 0


def test_missing_peers_say_how_to_install_them(ft, monkeypatch, capsys):
    monkeypatch.setattr(ft, "peers_missing", lambda: ["flowjax"])
    with pytest.raises(SystemExit) as stop:
        ft.main(["--quick"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "pip install -e '.[bench]'" in err and "flowjax" in err


def test_summary_takes_the_better_peer_and_median_ratios(ft):
    cells = [
        {
            "nll": {"pyro": 2.0, "numpyro": 2.1, "zuko": 1.95, "flowjax": 1.9},
            "ms_per_step": {"pyro": 4.0, "numpyro": 1.0, "zuko": 2.0, "flowjax": 2.0},
        },
        {
            "nll": {"pyro": 3.0, "numpyro": 2.9, "zuko": 3.1, "flowjax": 3.2},
            "ms_per_step": {"pyro": 3.0, "numpyro": 3.0, "zuko": 3.0, "flowjax": 1.0},
        },
        {
            "nll": {"pyro": 1.0, "numpyro": 1.0, "zuko": 1.0, "flowjax": 1.0},
            "ms_per_step": {"pyro": 1.0, "numpyro": 2.0, "zuko": 1.0, "flowjax": 1.0},
        },
    ]
    out = ft.summarize(cells, ft.LIBRARIES)
    assert out["nll_gap_max"]["pyro"] == pytest.approx(0.1)  # 2.0 - min(1.95, 1.9)
    assert out["nll_gap_max"]["numpyro"] == pytest.approx(0.2)
    assert out["pyro_vs_zuko"] == pytest.approx(1.0)  # median of 2, 1, 1
    assert out["numpyro_vs_flowjax"] == pytest.approx(2.0)  # median of 0.5, 3, 2
