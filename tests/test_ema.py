"""Exponential moving averages of a parameter group's weights (``Group(ema=d)``, Yazici et al.
2019) on both backends: the average follows ``avg <- d avg + (1 - d) w`` once a step from the
initial weights, ``Trainer.params`` gives it while training continues from the raw weights,
it travels through checkpoints exactly, and the adversarial recipes take ``--ema``. The game
is tests/two_player_game.py's (a critic ``h`` against a generator ``g``)."""

import dataclasses

import numpy as np
import pytest
import two_player_game as game

from ppgen.errors import CheckpointError, ConfigError
from ppgen.inference import optim
from tests.cli_helpers import cli, one_line

DECAY = 0.9


def _trainer(backend, ema=DECAY, **kwargs):
    critic, generator = game.groups(optim)
    groups = [critic, dataclasses.replace(generator, ema=ema)]
    if backend == "numpyro":
        from ppgen.inference.numpyro import Trainer

        pair = (game.numpyro_model, game.numpyro_guide, game.numpyro_game)
    else:
        import pyro

        from ppgen.inference.pyro import Trainer

        pyro.clear_param_store()
        pair = (game.pyro_model, game.pyro_guide, game.pyro_game)
    return Trainer(*pair, groups=groups, batch_size=40, **kwargs)


def _raw(state, name):
    return float(np.asarray(state.params[name].detach() if hasattr(state.params[name], "detach")
                            else state.params[name]))  # fmt: skip


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_average_follows_its_recursion_and_is_what_params_gives(backend):
    trainer = _trainer(backend)
    x = game.data()
    state = trainer.init(0, x)
    expected = _raw(state, "generator_g")  # started at the initial weights
    for i in range(10):
        state, _ = trainer.step(state, x[40 * i : 40 * (i + 1)])
        expected = DECAY * expected + (1 - DECAY) * _raw(state, "generator_g")
    given = game.params(backend, trainer, state)
    assert given["generator_g"] == pytest.approx(expected, rel=1e-5)
    assert abs(given["generator_g"] - _raw(state, "generator_g")) > 1e-3  # not the raw weight
    assert given["critic_h"] == _raw(state, "critic_h")  # the critic has no average
    # training continues from the raw weights: the same steps without ema move g alike
    plain = _trainer(backend, ema=None)
    other = plain.init(0, x)
    for i in range(10):
        other, _ = plain.step(other, x[40 * i : 40 * (i + 1)])
    assert _raw(other, "generator_g") == pytest.approx(_raw(state, "generator_g"), rel=1e-6)


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_average_travels_through_checkpoints_exactly(backend):
    """Saved after 5 steps and loaded into a fresh trainer, 5 more steps give the same raw
    weights and averages, bit for bit, as 10 uninterrupted steps; a checkpoint without
    averages does not load into a trainer that keeps them, nor the other way round."""
    x = game.data()
    whole = _trainer(backend)
    state = whole.init(0, x)
    for i in range(10):
        state, _ = whole.step(state, x[40 * i : 40 * (i + 1)])
    expected, _ = whole.state_arrays(state)

    first = _trainer(backend)
    half = first.init(0, x)
    for i in range(5):
        half, _ = first.step(half, x[40 * i : 40 * (i + 1)])
    arrays, meta = first.state_arrays(half)
    assert any("averages" in key and "generator_g" in key for key in arrays)
    second = _trainer(backend)
    resumed = second.load_state_arrays(second.init(0, x), arrays, meta)
    for i in range(5, 10):
        resumed, _ = second.step(resumed, x[40 * i : 40 * (i + 1)])
    got, _ = second.state_arrays(resumed)
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)

    plain = _trainer(backend, ema=None)
    with pytest.raises(CheckpointError):
        plain.load_state_arrays(plain.init(0, x), arrays, meta)
    plain_arrays, plain_meta = plain.state_arrays(plain.init(0, x))
    keeping = _trainer(backend)
    with pytest.raises(CheckpointError):
        keeping.load_state_arrays(keeping.init(0, x), plain_arrays, plain_meta)


def test_pyro_evaluation_runs_the_model_on_the_averages_then_restores_the_weights():
    """Pyro's model reads its live parameter tensors: evaluation (a validation evaluator,
    ``evaluate_bound``) swaps the averages in and the raw weights back, also on an error."""
    import pyro

    seen = []

    def evaluator(trainer, state, data):
        seen.append(float(pyro.param("generator_g").detach()))  # what the model would read
        return {"loss": 0.0}

    trainer = _trainer("pyro", evaluator=evaluator)
    x = game.data()
    state = trainer.init(0, x)
    for i in range(10):
        state, _ = trainer.step(state, x[40 * i : 40 * (i + 1)])
    raw = _raw(state, "generator_g")
    trainer.evaluate(state, x)
    assert seen == [pytest.approx(game.params("pyro", trainer, state)["generator_g"])]
    assert seen[0] != pytest.approx(raw)
    assert float(pyro.param("generator_g").detach()) == raw  # restored

    def failing(trainer, state, data):
        raise RuntimeError("boom")

    trainer.evaluator = failing
    with pytest.raises(RuntimeError, match="boom"):
        trainer.evaluate(state, x)
    assert float(pyro.param("generator_g").detach()) == raw


@pytest.mark.parametrize("ema", [0.0, 1.0, -0.5, True, "0.9"])
def test_a_decay_outside_0_1_is_refused_in_one_line(ema):
    with pytest.raises(ConfigError, match="ema must be a decay in") as error:
        optim.Group("generator", ema=ema)
    assert "\n" not in str(error.value)


def test_the_adversarial_recipes_take_ema(tmp_path):
    """``ppgen train gan --ema 0.99`` trains (its validation and samples from the average);
    a decay of 1 is refused in one line."""
    out = tmp_path / "run"
    code, _, err = cli(
        "train", "gan", "--ema", "0.99", "--dataset", "grid25", "--hidden", "16,16",
        "--epochs", "1", "--batch-size", "1000", "--backend", "numpyro", "--quiet", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert (out / "samples_2d.png").stat().st_size > 0
    line = one_line(cli("train", "gan", "--ema", "1", "--dataset", "grid25", "--out",
                        tmp_path / "bad"))  # fmt: skip
    assert "--ema must be a decay in [0, 1)" in line
