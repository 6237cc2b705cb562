"""NumPyro inference: objectives, log-likelihood estimation, training, MCMC (mirrors Pyro's)."""

from ppgen.inference.numpyro.aae import AAE
from ppgen.inference.numpyro.adversarial import Adversarial, FlowGAN
from ppgen.inference.numpyro.bigan import BiGAN
from ppgen.inference.numpyro.discrepancy import MMD, Sinkhorn
from ppgen.inference.numpyro.implicit import SampleEvaluator
from ppgen.inference.numpyro.infogan import InfoGAN
from ppgen.inference.numpyro.interop import compute, draw
from ppgen.inference.numpyro.loglik import (
    evaluate_log_likelihood,
    log_marginal_likelihood,
    log_weights,
)
from ppgen.inference.numpyro.mcmc import compare_with_guide, mcmc_latents
from ppgen.inference.numpyro.noise import DynamicBinarization, InputNoise, UniformNoise
from ppgen.inference.numpyro.objectives import ELBO, IWAE
from ppgen.inference.numpyro.score import NVIL, VIMCO
from ppgen.inference.numpyro.ssvae import (
    ClassifierEvaluator,
    SemiSupervisedELBO,
    label_distribution,
)
from ppgen.inference.numpyro.train import Trainer, TrainState

__all__ = [
    "AAE",
    "Adversarial",
    "BiGAN",
    "FlowGAN",
    "InfoGAN",
    "MMD",
    "SampleEvaluator",
    "Sinkhorn",
    "ClassifierEvaluator",
    "DynamicBinarization",
    "ELBO",
    "IWAE",
    "InputNoise",
    "UniformNoise",
    "NVIL",
    "SemiSupervisedELBO",
    "TrainState",
    "VIMCO",
    "Trainer",
    "compare_with_guide",
    "compute",
    "draw",
    "evaluate_log_likelihood",
    "label_distribution",
    "log_marginal_likelihood",
    "log_weights",
    "mcmc_latents",
]
