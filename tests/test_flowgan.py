"""The ``flowgan`` recipe (Grover et al. 2018) through the command line: a flow fitted by an
adversarial loss plus ``lambda`` times its exact NLL trains, validates by both figures,
evaluates by the exact test NLL and samples on both backends; ``--lambda`` moves the fit
between adversarial training and maximum likelihood; bad settings are refused in one line.
The objective's algebra (generator loss = adversarial loss + lambda NLL) is
tests/test_adversarial.py's."""

import json

import numpy as np
import pytest

from ppgen import runs
from tests.cli_helpers import cli, one_line

TINY = ("--dataset", "moons", "--layers", "2", "--hidden", "16,16", "--critic-hidden", "16",
        "--batch-size", "500", "--quiet")  # fmt: skip


def _records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("backend_name", ["pyro", "numpyro"])
def test_flowgan_trains_validates_by_nll_evaluates_and_samples(tmp_path, backend_name):
    out = tmp_path / "run"
    code, _, err = cli("train", "flowgan", *TINY, "--epochs", "2", "--n-critic", "2",
                       "--lambda", "0.5", "--backend", backend_name, "--out", out)  # fmt: skip
    assert code == 0, err
    last = _records(out)[-1]
    assert {"loss_critic", "loss_generator", "valid_nll", "valid_loss"} <= set(last)
    assert last["valid_loss"] == last["valid_nll"]  # lambda > 0: the best epoch by NLL
    assert np.isfinite(last["valid_nll"])
    assert np.isfinite(last["nll"])  # the training NLL term, logged beside the losses
    for name in ("density.png", "samples_2d.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name
    code, stdout, err = cli("eval", out, "--json", "--limit", "300")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["exact"] and result["n"] == 300 and np.isfinite(result["test_nll"])
    run = runs.load_trained(out)
    x = runs.sample(run, 5, seed=2)
    assert x.shape == (5, 2) and np.all(np.isfinite(x))
    np.testing.assert_array_equal(x, runs.sample(run, 5, seed=2))


def test_lambda_moves_the_fit_towards_maximum_likelihood(tmp_path):
    """From the same start, the hybrid (lambda = 1) ends with a lower validation NLL than
    adversarial training alone (lambda = 0): the likelihood term is what fits p(x)
    (Grover et al. 2018's point, on moons)."""
    nll = {}
    for weight in ("0", "1"):
        out = tmp_path / f"lambda{weight}"
        code, _, err = cli("train", "flowgan", *TINY, "--epochs", "2", "--lr", "3e-3",
                           "--lambda", weight, "--n-critic", "1", "--backend", "pyro",
                           "--out", out)  # fmt: skip
        assert code == 0, err
        nll[weight] = _records(out)[-1]["valid_nll"]
        assert ("nll" in _records(out)[-1]) == (weight != "0")  # no term at lambda 0
    assert nll["1"] < nll["0"] - 0.1, nll


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--lambda=-1",), "--lambda: expected a finite number >= 0"),
        (("--lambda", "nan"), "--lambda: expected a finite number >= 0"),
        (("--weight-decay", "0.1"), "flowgan takes no --weight-decay"),
        (("--gradient-penalty", "-2"), "--gradient-penalty must be >= 0"),
        (("--flow", "glow"), "--flow glow is an image flow"),
        (("--critic", "dcgan"), "--critic dcgan scores 28x28 images"),
        (("--keep", "fid"), "--keep fid needs MNIST"),
        (("--keep", "best"), "invalid choice: 'best'"),
    ],
)
def test_bad_settings_are_refused_in_one_line(tmp_path, flags, message):
    line = one_line(cli("train", "flowgan", *TINY, "--epochs", "1", *flags, "--out",
                        tmp_path / "run"))  # fmt: skip
    assert message in line, line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_keep_chooses_the_validation_figure_that_keeps_the_checkpoint():
    """``--keep auto`` keeps a hybrid by its NLL and adversarial training alone by FID (on
    MNIST); ``--keep nll|fid`` overrides either; the validation loss is then that figure."""
    from ppgen.recipes.flowgan import FLOWGAN, _NLLAndSamples

    options = FLOWGAN.options
    assert options().kept_by("mnist") == "nll"
    assert options(likelihood_weight=0.0).kept_by("mnist") == "fid"
    assert options(likelihood_weight=0.0).kept_by("moons") == "nll"  # no FID off MNIST
    assert options(keep="fid").kept_by("mnist") == "fid"
    assert options(likelihood_weight=0.0, keep="nll").kept_by("mnist") == "nll"

    class Trainer:
        def evaluate_bound(self, state, data):
            return {"elbo": -3.0}

    def fid(trainer, state, data):
        return {"fid": 42.0, "classes": 10}

    by_fid = _NLLAndSamples(fid, nll_is_loss=False)(Trainer(), None, None)
    assert by_fid == {"nll": 3.0, "loss": 42.0, "fid": 42.0, "classes": 10}
    assert _NLLAndSamples(fid, nll_is_loss=True)(Trainer(), None, None)["loss"] == 3.0
