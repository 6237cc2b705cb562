"""Parameter groups: a two-player game (tests/two_player_game.py) trains to its known fixed
point on both backends, each player moving only its own parameters on its own loss, and a
run killed with SIGKILL resumes to exactly the uninterrupted run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import two_player_game as game
from safetensors.numpy import load_file

from ppgen.errors import ConfigError
from ppgen.inference.optim import Group

HERE = Path(__file__).parent


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_the_game_reaches_its_fixed_point(backend):
    trainer = game.TRAINERS[backend]()
    x = game.data()
    state = trainer.init(3, x)
    assert game.params(backend, trainer, state) == {"generator_g": 0.0, "critic_h": 0.0}
    for epoch in range(40):
        state, metrics = trainer.train_epoch(state, x, epoch)
    assert metrics["finite"] == 1.0
    assert {"loss", "loss_critic", "loss_generator", "lr_critic", "lr_generator"} <= set(metrics)
    assert metrics["loss"] == pytest.approx(metrics["loss_critic"] + metrics["loss_generator"])
    # The generator's cosine schedule counts its own updates (one per step, 10 per epoch):
    # after 400 it reaches 0; the critic's rate stays constant.
    assert metrics["lr_generator"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["lr_critic"] == 0.1
    p = game.params(backend, trainer, state)
    assert abs(p["generator_g"] - x.mean()) < 0.1, p  # g -> mean of the data
    assert abs(p["critic_h"]) < 0.1, p  # the critic can no longer tell them apart


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_each_player_steps_on_its_own_loss(backend):
    """One step from g = h = 0: the critic's two SGD updates move h; then the generator's
    first Adam update moves g by its learning rate, towards where the critic points
    (d loss_generator / dg = -h). Had the critic's loss reached the generator's gradient
    (d loss_critic / dg = +h), the two would cancel and g would not move."""
    trainer = game.TRAINERS[backend]()
    x = game.data()
    state, metrics = trainer.step(trainer.init(0, x), x[:40])
    p = game.params(backend, trainer, state)
    assert p["critic_h"] != 0.0
    # (float32 Adam: its bias corrections are exact to about 1e-5)
    assert p["generator_g"] == pytest.approx(0.05 * np.sign(p["critic_h"]), rel=1e-4)
    assert {"loss_critic", "loss_generator"} <= set(metrics)


def test_groups_must_cover_every_parameter_once():
    from ppgen.inference.pyro import Trainer

    x = game.data()
    only_critic = [Group("critic", params="critic*")]
    trainer = Trainer(game.pyro_model, game.pyro_guide, game.pyro_game, groups=only_critic)
    with pytest.raises(ConfigError, match="generator_g' matches no group"):
        trainer.init(0, x)
    both = [Group("critic", params="*"), Group("generator", params="generator*")]
    trainer = Trainer(game.pyro_model, game.pyro_guide, game.pyro_game, groups=both)
    with pytest.raises(ConfigError, match="matches the groups"):
        trainer.init(0, x)
    typo = [Group("critic", params="critic*"), Group("generator", params="gen_*")]
    trainer = Trainer(game.pyro_model, game.pyro_guide, game.pyro_game, groups=typo)
    with pytest.raises(ConfigError, match="matches no group"):
        trainer.init(0, x)
    with pytest.raises(ConfigError, match="give lr"):
        Trainer(game.pyro_model, game.pyro_guide, game.pyro_game, groups=both, lr=0.1)
    with pytest.raises(ConfigError, match="distinct"):
        Trainer(game.pyro_model, game.pyro_guide, game.pyro_game, groups=[both[0], both[0]])
    with pytest.raises(ConfigError, match="updates"):
        Group("critic", updates=0)
    with pytest.raises(ConfigError, match="optimizer"):
        Group("critic", optimizer="adagrad")

    def summed(model, guide, x, **kwargs):  # the players' losses added into one
        return sum(game.pyro_game(model, guide, x, **kwargs).values())

    two = [Group("critic", params="critic*"), Group("generator", params="generator*")]
    scalar = Trainer(game.pyro_model, game.pyro_guide, summed, groups=two)
    with pytest.raises(ConfigError, match="one loss each"):
        scalar.init(0, x)


class _Reporting:
    """The game, reporting ``twice_mean``: twice the batch's sum of x (a per-dataset-style
    figure the trainer divides by the batch size), so its logged value is 2 mean(x)."""

    reported = ("twice_mean",)

    def __init__(self, backend):
        self.backend = backend

    def __call__(self, *args, num_data=None):
        if self.backend == "numpyro":
            out = game.numpyro_game(*args, num_data=num_data)
        else:
            out = game.pyro_game(*args, num_data=num_data)
        return {**out, "twice_mean": 2 * args[-1].sum()}


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_reported_entries_are_logged_per_example_beside_the_losses(backend):
    """An objective's ``reported`` entries reach the metrics: averaged over the steps (and
    over each step's three calls: two critic updates, one generator update), divided into a
    per-example figure as the losses are, and never added to the loss."""
    from ppgen.inference import optim

    if backend == "numpyro":
        from ppgen.inference.numpyro import Trainer

        pair = (game.numpyro_model, game.numpyro_guide)
    else:
        from ppgen.inference.pyro import Trainer

        pair = (game.pyro_model, game.pyro_guide)
    trainer = Trainer(*pair, _Reporting(backend), groups=game.groups(optim), batch_size=40)
    x = game.data()
    state = trainer.init(0, x)
    state, metrics = trainer.step(state, x[:40])
    assert metrics["twice_mean"] == pytest.approx(2 * x[:40].mean(), rel=1e-5)
    for epoch in range(2):
        state, metrics = trainer.train_epoch(state, x, epoch)
    assert metrics["twice_mean"] == pytest.approx(2 * x.mean(), rel=1e-5)  # all 10 batches
    assert metrics["loss"] == pytest.approx(metrics["loss_critic"] + metrics["loss_generator"])
    if backend == "numpyro":  # the host loop of jitted steps logs the same
        steps = Trainer(*pair, _Reporting(backend), groups=game.groups(optim), batch_size=40,
                        epoch_loop="steps")  # fmt: skip
        _, by_steps = steps.train_epoch(steps.init(0, x), x, 0)
        assert by_steps["twice_mean"] == pytest.approx(2 * x.mean(), rel=1e-5)
    for bad, message in ((("loss_critic",), "a name the trainer"), ("twice_mean", "tuple")):
        objective = _Reporting(backend)
        objective.reported = bad
        with pytest.raises(ConfigError, match=message):
            Trainer(*pair, objective, groups=game.groups(optim), batch_size=40)


def _run(backend, run_dir, epochs, resume=False, kill_after=None):
    args = [backend, str(run_dir), str(epochs), "1" if resume else "0"]
    args.append("-" if kill_after is None else str(kill_after))
    return subprocess.run(
        [sys.executable, str(HERE / "two_player_game.py"), *args],
        capture_output=True,
        env={**__import__("os").environ, "PYTHONPATH": str(HERE)},
    )


def _latest(run_dir):
    ckpt = run_dir / "checkpoints"
    return load_file(str(ckpt / (ckpt / "LATEST").read_text().strip() / "state.safetensors"))


@pytest.mark.parametrize("backend", ["pyro", "numpyro"])
def test_kill_9_then_resume_equals_uninterrupted(tmp_path, float64, backend):
    """The run killed in its own process and resumed equals the uninterrupted run. Only the
    run that is killed needs a process of its own (each costs the imports of torch and
    jax): the uninterrupted run and the resumption run here, in float64 as the script's,
    reading the killed run's checkpoint from disk as a fresh process would."""
    game.run(backend, str(tmp_path / "whole"), 4)
    killed = _run(backend, tmp_path / "killed", 4, kill_after=1)
    assert killed.returncode == -9, killed.stderr.decode()
    game.run(backend, str(tmp_path / "killed"), 4, resume=True)
    a, b = _latest(tmp_path / "whole"), _latest(tmp_path / "killed")
    assert set(a) == set(b) and any("critic" in k for k in a) and any("generator" in k for k in a)
    for key in a:  # both players' parameters and optimiser states, the generator's Adam too
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
