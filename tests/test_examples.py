"""Every example runs, with tiny arguments."""

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_user_model_estimator_matches_closed_form():
    result = load("user_model").main(["--epochs", "15", "--k", "2000"])
    # The guide family contains the exact posterior and training gets close to it, so the
    # importance-sampled estimate must match the closed form tightly.
    assert abs(result["estimated_log_px"] - result["exact_log_px"]) < 0.05
    assert result["max_abs_error"] < 0.2


def test_demo_runs_and_writes_pictures(tmp_path, capsys):
    out = tmp_path / "demo"
    load("demo").main(["--dataset", "digits", "--minutes", "0.05", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "validation error" in printed and "test error" in printed
    for name in ("class_samples.png", "confusion.png", "curves.png"):
        assert (out / name).stat().st_size > 0
        assert f"wrote {out / name}" in printed


def test_mcmc_posterior_example(tmp_path):
    gap = load("mcmc_posterior").main(
        ["--images", "2", "--samples", "150", "--epochs", "5", "--out", str(tmp_path)]
    )
    assert gap["max_r_hat"] < 1.1  # two chains over a 4-d posterior mix within 150 draws
    assert (tmp_path / "posterior.png").stat().st_size > 0


def test_vae_examples_train_with_trainer_and_fit(tmp_path, capsys):
    """The per-backend VAE examples (Trainer and fit, no CLI) train, evaluate and draw."""
    for backend in ("pyro", "numpyro"):
        out = tmp_path / backend
        args = ["--dataset", "digits", "--epochs", "3", "--latent", "4", "--k", "20"]
        result = load(f"vae_{backend}").main([*args, "--out", str(out)])
        # log p(x) >= IWAE_k >= ELBO in expectation: the 20-sample estimate beats the ELBO.
        assert result["test_elbo"] < result["test_log_px"] < 0
        assert (out / "samples.png").stat().st_size > 0
        assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
        assert f"wrote {out / 'samples.png'}" in capsys.readouterr().out
