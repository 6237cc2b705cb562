"""Adversarial autoencoders and their MMD / Sinkhorn variants (ppgen.inference.{pyro,numpyro}.aae
and the ``aae`` recipe): the two backends agree on every match with the same weights and
draws, the reconstruction term is ``-log p(x | z)`` by hand (never the prior's density), the
MMD match of a posterior equal to the prior is 0 in expectation, each player's update leaves
the other's parameters alone, bad input is refused in one line, and the recipe trains,
evaluates, samples and draws for every match."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pyro
import pytest
import torch
from numpyro import handlers as nh
from numpyro.contrib.module import eqx_module
from scipy import stats
from scipy.special import log_expit

import ppgen.inference.numpyro.aae as naae
import ppgen.inference.pyro.aae as paae
from ppgen import runs
from ppgen.errors import ConfigError
from ppgen.inference.games import AAE_MATCHES, IMQ_MULTIPLES
from ppgen.models.numpyro import gan as ngan
from ppgen.models.numpyro import nets as nnets
from ppgen.models.numpyro.base import normal_params as n_normal_params
from ppgen.models.pyro import gan as pgan
from ppgen.models.pyro import nets as pnets
from ppgen.models.pyro.base import normal_params as p_normal_params
from ppgen.models.pyro.params import local_module
from tests.cli_helpers import cli, one_line

D, Z, B, N = 5, 2, 12, 60
# POT (Pyro) and ott-jax (NumPyro) agree to 1e-5 only when both converge tightly
# (tests/test_sinkhorn.py).
TIGHT = {"threshold": 1e-8, "max_iterations": 100_000}
MATCHES = AAE_MATCHES


def pair_of_nets(sizes, seed):
    """The same MLP on both backends (torch's weights copied into the Equinox one)."""
    p = pnets.MLP(sizes, "tanh", seed=seed)
    return p, nnets.load_net_weights(nnets.MLP(sizes, "tanh"), pnets.net_weights(p))


def critics(seed=3):
    """The same critic on z on both backends."""
    p = pgan.MLPCritic(Z, hidden=(6,), seed=seed)
    return p, nnets.load_net_weights(ngan.MLPCritic(Z, hidden=(6,)), pnets.net_weights(p))


def programs(enc, dec):
    """A user's VAE-like pair on each backend whose draws are given: the prior's ``z`` are the
    points ``z_prior`` (a Delta: its density is -inf anywhere else, so an objective that
    scored it at the guide's ``z`` would be infinite), the guide's ``loc + scale * eps``."""
    (enc_p, enc_n), (dec_p, dec_n) = enc, dec
    pdist, ndist = pyro.distributions, numpyro.distributions

    def pyro_model(x, z_prior, eps, num_data=None):
        decoder = local_module("decoder", dec_p)
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            z = pyro.sample("z", pdist.Delta(z_prior, event_dim=1))
            pyro.sample("x", pdist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def pyro_guide(x, z_prior, eps, num_data=None):
        encoder = local_module("encoder", enc_p)
        with pyro.plate("data", num_data or len(x), subsample=torch.arange(len(x))):
            loc, scale = p_normal_params(encoder(x))
            pyro.sample("z", pdist.Delta(loc + scale * eps, event_dim=1))

    def numpyro_model(x, z_prior, eps, num_data=None):
        decoder = eqx_module("decoder", dec_n)
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            z = numpyro.sample("z", ndist.Delta(z_prior, event_dim=1))
            numpyro.sample("x", ndist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def numpyro_guide(x, z_prior, eps, num_data=None):
        encoder = eqx_module("encoder", enc_n)
        with numpyro.plate("data", num_data or len(x), subsample_size=len(x)):
            loc, scale = n_normal_params(encoder(x))
            numpyro.sample("z", ndist.Delta(loc + scale * eps, event_dim=1))

    return (pyro_model, pyro_guide), (numpyro_model, numpyro_guide)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((B, D)) < 0.4).astype(np.float64)
    return x, rng.normal(size=(B, Z)), rng.normal(size=(B, Z))


def call_numpyro(objective, model, guide, *args, **kwargs):
    """The NumPyro objective outside a trainer (its networks' ``eqx_module`` need a seed)."""
    with nh.seed(rng_seed=0):
        return objective(jax.random.PRNGKey(0), model, guide, *args, **kwargs)


@pytest.mark.parametrize("match", MATCHES)
def test_backends_agree_on_each_match(float64, match):
    (pm, pg), (nm, ng) = programs(pair_of_nets((D, 6, 2 * Z), 0), pair_of_nets((Z, 6, D), 1))
    crit_p, crit_n = critics() if match == "adversarial" else (None, None)
    options = {"weight": 2.5}  # and each match's own settings (another's are refused)
    options |= {"adversarial": {"gradient_penalty": 0.0}, "sinkhorn": TIGHT}.get(match, {})
    x, z_prior, eps = batch()
    out_p = paae.AAE(match, critic=crit_p, **options)(
        pm, pg, *map(torch.as_tensor, (x, z_prior, eps)), num_data=N
    )
    out_n = call_numpyro(naae.AAE(match, critic=crit_n, **options), nm, ng,
                         *map(jnp.asarray, (x, z_prior, eps)), num_data=N)  # fmt: skip
    if match == "adversarial":
        assert set(out_p) == set(out_n) == {"critic", "generator"}
        pairs = [(out_p[k], out_n[k]) for k in out_p]
    else:
        assert out_p.dim() == 0 and jnp.shape(out_n) == ()
        pairs = [(out_p, out_n)]
    for p, n in pairs:
        # float64: 1e-12 but for Sinkhorn, two solvers converged to 1e-8 on the marginals
        np.testing.assert_allclose(p.item(), float(n), rtol=1e-5)
    # The matching term is there: another weight, another loss.
    heavier = paae.AAE(match, critic=crit_p, **{**options, "weight": 5.0})(
        pm, pg, *map(torch.as_tensor, (x, z_prior, eps)), num_data=N
    )
    first = out_p["generator"] if match == "adversarial" else out_p
    assert (heavier["generator"] if match == "adversarial" else heavier).item() > first.item()


def _imq_mmd2(a, b, scales):
    """The unbiased MMD^2 with the IMQ kernels ``c / (c + r^2)``, written out in numpy."""

    def k(u, v):
        sq = ((u[:, None, :] - v[None, :, :]) ** 2).sum(-1)
        return sum(c / (c + sq) for c in scales)

    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    within = (kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (
        m * (m - 1)
    )
    return within - 2 * k(a, b).mean()


def test_the_reconstruction_term_is_the_likelihood_by_hand(float64, backend):
    """With a fixed linear decoder ``logits = z W + b`` and given draws, the reconstruction is
    ``-(N / B) sum_i log Bernoulli(x_i | sigmoid(z_i W + b))`` (no prior density: the
    Delta prior would make it infinite), and the MMD match adds ``weight N MMD^2``."""
    rng = np.random.default_rng(4)
    x, z_prior, z_post = batch(5)
    w, b = rng.normal(size=(Z, D)), rng.normal(size=D)
    ppl, dist, arr = backend.ppl, backend.dist, backend.array
    W, b_ = arr(w), arr(b)

    def model(x, z_prior, z_post, num_data):
        with ppl.plate("data", num_data, subsample_size=len(x)):
            z = ppl.sample("z", dist.Delta(z_prior, event_dim=1))
            ppl.sample("x", dist.Bernoulli(logits=z @ W + b_).to_event(1), obs=x)

    def guide(x, z_prior, z_post, num_data):
        with ppl.plate("data", num_data, subsample_size=len(x)):
            ppl.sample("z", dist.Delta(z_post, event_dim=1))

    logits = z_post @ w + b
    expected = -(N / B) * (x * log_expit(logits) + (1 - x) * log_expit(-logits)).sum()
    args = tuple(map(arr, (x, z_prior, z_post)))
    for match in ("mmd", "sinkhorn"):
        aae = backend.inference.AAE(match, weight=0.0)
        assert backend.loss(aae, model, guide, *args, num_data=N) == pytest.approx(expected, 1e-12)
        term = backend.call(aae.reconstruction, model, guide, *args, num_data=N)
        assert float(term) == pytest.approx(expected, rel=1e-12)
    weighted = backend.loss(backend.inference.AAE("mmd", weight=3.0), model, guide, *args,
                            num_data=N)  # fmt: skip
    scales = [2 * Z * m for m in IMQ_MULTIPLES]
    assert weighted - expected == pytest.approx(3.0 * N * _imq_mmd2(z_post, z_prior, scales), 1e-10)


def test_the_mmd_match_of_the_prior_is_zero_in_expectation(float64, backend):
    """``q(z | x) = N(shift, I)`` whatever ``x``, the prior ``N(0, I)`` drawn by the objective
    itself, and ``x`` independent of ``z``: over 400 calls the mean of the matching term
    ``(loss - reconstruction) / (weight N)`` is 0 within 4 standard errors for ``shift = 0``
    (the unbiased MMD^2 of equal distributions), and far above 0 for ``shift = 1``."""
    ppl, dist, arr = backend.ppl, backend.dist, backend.array
    x = np.random.default_rng(6).normal(size=(B, D))

    def model(x, shift, num_data):
        with ppl.plate("data", num_data, subsample_size=len(x)):
            ppl.sample("z", dist.Normal(arr(np.zeros((B, Z))), 1.0).to_event(1))
            ppl.sample("x", dist.Normal(arr(np.zeros((B, D))), 1.0).to_event(1), obs=x)

    def guide(x, shift, num_data):
        with ppl.plate("data", num_data, subsample_size=len(x)):
            ppl.sample("z", dist.Normal(arr(np.zeros((B, Z))) + shift, 1.0).to_event(1))

    recon = -(N / B) * stats.norm.logpdf(x).sum()
    aae = backend.inference.AAE("mmd", weight=2.0, kernel="gaussian")
    reps = 400
    # NumPyro: all the calls in one compiled, vectorised function of the key and the shift
    many = jax.jit(jax.vmap(lambda key, s: aae(key, model, guide, arr(x), s, num_data=N),
                            in_axes=(0, None)))  # fmt: skip
    for shift, zero in ((0.0, True), (1.0, False)):
        if backend.name == "pyro":
            pyro.set_rng_seed(7)
            losses = np.array([aae(model, guide, arr(x), shift, num_data=N).item()
                               for _ in range(reps)])  # fmt: skip
        else:
            keys = jax.random.split(jax.random.PRNGKey(7), reps)
            losses = np.asarray(many(keys, shift))
        matching = (losses - recon) / (2.0 * N)
        mean, se = matching.mean(), matching.std(ddof=1) / np.sqrt(reps)
        if zero:
            assert abs(mean) < 4 * se, (mean, se)
        else:
            assert mean > 20 * se and mean > 0.05, (mean, se)


def _params(trainer, state, prefixes):
    """The parameters whose site names start with one of ``prefixes``, as numpy copies."""
    out = {}
    for k, v in trainer.params(state).items():
        if k.startswith(prefixes):
            if torch.is_tensor(v):
                out[k] = v.detach().numpy().copy()
            else:
                leaves = jax.tree_util.tree_leaves_with_path(v)
                out.update({k + jax.tree_util.keystr(p): np.asarray(a).copy() for p, a in leaves})
    return out


PLAYERS = {"critic": ("critic",), "generator": ("encoder", "decoder")}


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_each_player_moves_only_its_own_parameters(name):
    """The critic's step is the same whatever the encoder-decoder's learning rate (run after
    it), and the encoder-decoder's step the same whatever the critic's (run after it); both
    move."""
    import ppgen.inference.numpyro as ninf
    import ppgen.inference.pyro as pinf
    import ppgen.models.numpyro as nmod
    import ppgen.models.pyro as pmod

    models, inference = (pmod, pinf) if name == "pyro" else (nmod, ninf)
    x = (np.random.default_rng(8).random((B, D)) < 0.5).astype(np.float32)
    after = {}
    for critic_first in (True, False):
        for scale in (1.0, 100.0):
            lr_c, lr_g = (1e-3, 1e-3 * scale) if critic_first else (1e-3 * scale, 1e-3)
            vae = models.VAE(D, latent=Z, hidden=(6,), seed=0)
            critic = models.MLPCritic(Z, hidden=(6,), seed=1)
            objective = inference.AAE("adversarial", critic=critic)
            groups = objective.groups(lr_critic=lr_c, lr_generator=lr_g, critic_first=critic_first)
            trainer = inference.Trainer(vae.model, vae.guide, objective, groups=groups,
                                        batch_size=B)  # fmt: skip
            state = trainer.init(0, x)
            before = {p: _params(trainer, state, pre) for p, pre in PLAYERS.items()}
            state, metrics = trainer.step(state, x)
            assert {"loss_critic", "loss_generator"} <= set(metrics)
            now = {p: _params(trainer, state, pre) for p, pre in PLAYERS.items()}
            for p in now:  # both players moved
                assert any(not np.array_equal(now[p][k], before[p][k]) for k in now[p]), p
            after[critic_first, scale] = now
    for first, kept in ((True, "critic"), (False, "generator")):
        a, b = after[first, 1.0][kept], after[first, 100.0][kept]
        assert a.keys() == b.keys() and a
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("module", [paae, naae], ids=["pyro", "numpyro"])
def test_bad_options_are_refused_in_one_line(module):
    gan = pgan if module is paae else ngan
    critic = gan.MLPCritic(Z, hidden=(4,))
    for args, kwargs, match in (
        (("gan",), {}, "unknown match 'gan'"),
        (("adversarial",), {}, "the adversarial match needs a critic"),
        (("mmd",), {"critic": critic}, "the mmd match has no critic"),
        (("sinkhorn",), {"weight": -1.0}, "weight must be a finite number >= 0"),
        (("sinkhorn",), {"epsilon": 0.0}, "epsilon must be a finite number > 0"),
        (("sinkhorn",), {"p": 3}, "p must be 1 or 2"),
        (("sinkhorn",), {"rho": 0.0}, "rho must be a number > 0"),
        (("mmd",), {"kernel": "rbf"}, "unknown MMD kernel 'rbf'"),
        (("mmd",), {"bandwidths": (1.0, -2.0)}, "MMD bandwidths must be positive"),
        (("adversarial",), {"critic": critic, "n_critic": 0}, "n_critic must be an integer"),
        (("adversarial",), {"critic": critic, "loss": "wgan"}, "unknown adversarial loss"),
        # a setting another match reads would be silently ignored
        (("mmd",), {"rho": 1.0}, r"match='mmd' does not read rho=1.0 \(the sinkhorn match's\)"),
        (("sinkhorn",), {"kernel": "gaussian"}, "kernel='gaussian' \\(the mmd match's"),
        (("mmd",), {"loss": "hinge"}, "loss='hinge' \\(the adversarial match's"),
        (("adversarial",), {"critic": critic, "bandwidths": (1.0,)}, "the mmd match's"),
        (("adversarial",), {"critic": critic, "epsilon": 0.5}, "the sinkhorn match's"),
        (("sinkhorn",), {"bandwidths": np.array([1.0, 2.0])}, r"bandwidths=\[1.0, 2.0\]"),
        (
            ("mmd",),
            {"epsilon": np.array([0.5, 0.6]), "p": 1},
            r"epsilon=\[0.5, 0.6\] \(the sinkhorn match's\), p=1 \(.*drop them",
        ),
    ):
        with pytest.raises(ConfigError, match=match) as err:
            module.AAE(*args, **kwargs)
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="the mmd match has one player"):
        module.AAE("mmd").groups()
    # values meaning the default are accepted, so are copies of a built objective
    module.AAE("mmd", rho=float("inf"), gradient_penalty=0.0, epsilon=1.0, p=2)
    for aae in (
        module.AAE("mmd"),
        module.AAE("sinkhorn", rho=1.0),
        module.AAE("adversarial", critic=critic),
    ):
        assert dataclasses.replace(aae, weight=2.0).weight == 2.0
    aae = module.AAE("adversarial", critic=critic)
    assert aae.players == ("critic", "generator") and aae.param_prefixes == ("critic",)
    critic_group, generator_group = aae.groups()
    assert (critic_group.name, generator_group.name) == ("critic", "generator")
    assert module.AAE("mmd").param_prefixes == ()
    assert module.AAE("mmd").kernel_bandwidths(4) == tuple(8 * m for m in IMQ_MULTIPLES)


@pytest.mark.parametrize("name", ["pyro", "numpyro"])
def test_pairs_without_the_sites_are_refused_in_one_line(float64, name):
    (pm, pg), (nm, ng) = programs(pair_of_nets((D, 4, 2 * Z), 0), pair_of_nets((Z, 4, D), 1))
    x, z_prior, eps = batch()
    model, guide = (pm, pg) if name == "pyro" else (nm, ng)
    arr = torch.as_tensor if name == "pyro" else jnp.asarray
    args = tuple(map(arr, (x, z_prior, eps)))

    def call(aae, m=model, g=guide, **kwargs):
        if name == "pyro":
            return aae(m, g, *args, num_data=N, **kwargs)
        return call_numpyro(aae, m, g, *args, num_data=N, **kwargs)

    module = paae if name == "pyro" else naae
    cases = (
        (module.AAE("mmd", latent="w"), {}, "the guide has no latent site 'w'"),
        (module.AAE("mmd", site="y"), {}, "the model has no observed site 'y'"),
        (module.AAE("mmd"), {"player": "critic"}, "player must be one of"),
    )
    for aae, kwargs, match in cases:
        with pytest.raises(ConfigError, match=match) as err:
            call(aae, **kwargs)
        assert "\n" not in str(err.value)
    # A guide with a "z" the model does not have.
    with pytest.raises(ConfigError, match="the model has no latent site 'z'") as err:
        call(module.AAE("mmd"), m=lambda *a, **k: None)
    assert "\n" not in str(err.value)


TINY = ("--latent", "2", "--hidden", "8", "--epochs", "1", "--quiet")


@pytest.mark.parametrize(
    ("backend_name", "dataset", "flags"),
    [
        ("pyro", "digits", ("--match", "adversarial", "--n-critic", "2", "--weight", "2")),
        ("numpyro", "grid25", ("--match", "mmd", "--kernel", "gaussian", "--batch-size", "1000")),
        ("pyro", "digits", ("--match", "sinkhorn", "--epsilon", "0.5", "--batch-size", "100")),
    ],
)
def test_recipe_trains_evaluates_samples_and_draws(tmp_path, backend_name, dataset, flags):
    out = tmp_path / "run"
    code, _, err = cli("train", "aae", *flags, "--backend", backend_name, "--dataset", dataset,
                       *TINY, "--out", out)  # fmt: skip
    assert code == 0, err
    images = dataset == "digits"
    names = ("prior_samples.png", "reconstructions.png") if images else ("samples_2d.png",)
    for picture in (*names, "latent_map.png", "curves.png"):
        assert (out / picture).stat().st_size > 0, picture
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["valid_loss"] == record["valid_reconstruction_nll"] > 0
    if "adversarial" in flags:
        assert {"loss_critic", "loss_generator", "lr_critic", "lr_generator"} <= set(record)
    code, stdout, err = cli("eval", out, "--json", "--limit", "300")
    assert code == 0, err
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["test_reconstruction_nll"] > 0 and np.isfinite(result["latent_mmd2"])
    if not images:
        assert result["samples"] == 300 and 0 <= result["modes"] <= 25
    run = runs.load_trained(out)  # the critic's params are the objective's, not the model's
    samples = runs.sample(run, 7, seed=3)
    assert samples.shape == (7, 64 if images else 2) and np.all(np.isfinite(samples))
    np.testing.assert_array_equal(samples, runs.sample(run, 7, seed=3))
    if backend_name == "pyro":  # the command too (Pyro: no compilation to wait for)
        code, _, err = cli("sample", out, "-n", "16")
        assert code == 0, err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ("--match", "mmd", "--loss", "hinge"),
            "--loss belongs to --match adversarial, not --match mmd; drop it or use --match "
            "adversarial",
        ),
        (("--match", "adversarial", "--epsilon", "2"), "--epsilon belongs to --match sinkhorn"),
        (
            ("--match", "mmd", "--max-iterations", "5"),
            "--max-iterations belongs to --match sinkhorn",
        ),
        (("--match", "mmd", "--rho", "1"), "--rho belongs to --match sinkhorn"),
        (("--match", "sinkhorn", "--p", "3"), "--p must be 1 or 2"),
        (("--match", "mmd", "--weight", "-2"), "--weight must be >= 0"),
        (("--match", "adversarial", "--weight-decay", "0.1"), "takes no --weight-decay"),
    ],
)
def test_recipe_refuses_bad_settings_in_one_line(tmp_path, flags, expected):
    line = one_line(cli("train", "aae", *flags, "--dataset", "digits", *TINY, "--batch-size", "100",
                        "--out", tmp_path / "run"))  # fmt: skip
    assert expected in line
