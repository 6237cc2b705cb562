"""Pyro models: each a ``model(x, num_data=None)`` / ``guide(x, num_data=None)`` pair."""

from ppgen.models.pyro.ar import (
    AutoregressiveDensity,
    AutoregressiveDistribution,
    DiscretizedMixLogistic,
)
from ppgen.models.pyro.autoregressive import MaskedAutoregressive
from ppgen.models.pyro.bigan import BiGANModel
from ppgen.models.pyro.charrnn import CharRNN
from ppgen.models.pyro.coupling import Additive, Affine, Coupling, RationalQuadraticSpline
from ppgen.models.pyro.flow import (
    ConditionalFlowDensity,
    Flow,
    FlowDensity,
    build_flow,
    flow_distribution,
    with_logit,
)
from ppgen.models.pyro.flow_vae import FlowVAE, LatentFlow
from ppgen.models.pyro.fvsbn import FVSBN
from ppgen.models.pyro.gan import DCGANCritic, DCGANGenerator, Generator, MLPCritic
from ppgen.models.pyro.image_flows import (
    ActNorm,
    ConvNet,
    Dequantize,
    FactorOut,
    GlowNet,
    Invertible1x1Conv,
    Logit,
    Squeeze,
    Squeezed,
    glow,
    initialize_flow,
    multiscale_realnvp,
)
from ppgen.models.pyro.infogan import InfoGenerator
from ppgen.models.pyro.linear_gaussian import LinearGaussian
from ppgen.models.pyro.made import MADE
from ppgen.models.pyro.mixture import GaussianMixture
from ppgen.models.pyro.nade import NADE
from ppgen.models.pyro.nets import MLP
from ppgen.models.pyro.pixelcnn import GatedPixelCNN, PixelCNN
from ppgen.models.pyro.sbn import SigmoidBeliefNet
from ppgen.models.pyro.ssvae import SSVAE
from ppgen.models.pyro.transforms import (
    ConditionalPlanar,
    ConditionalRadial,
    ConditionedPlanar,
    ConditionedRadial,
    DiagonalScaling,
    LULinear,
    Permutation,
    Planar,
    Radial,
    random_permutation,
    reverse_permutation,
)
from ppgen.models.pyro.vae import VAE, HierarchicalVAE
from ppgen.models.pyro.wavenet import WaveNet

__all__ = [
    "BiGANModel",
    "DCGANCritic",
    "DCGANGenerator",
    "Generator",
    "InfoGenerator",
    "MLPCritic",
    "AutoregressiveDensity",
    "AutoregressiveDistribution",
    "DiscretizedMixLogistic",
    "ActNorm",
    "ConvNet",
    "Dequantize",
    "FactorOut",
    "GlowNet",
    "Invertible1x1Conv",
    "Logit",
    "Squeeze",
    "Squeezed",
    "glow",
    "initialize_flow",
    "multiscale_realnvp",
    "Additive",
    "Affine",
    "Coupling",
    "RationalQuadraticSpline",
    "MADE",
    "MaskedAutoregressive",
    "MLP",
    "SSVAE",
    "VAE",
    "HierarchicalVAE",
    "LinearGaussian",
    "GaussianMixture",
    "SigmoidBeliefNet",
    "ConditionalFlowDensity",
    "Flow",
    "FlowDensity",
    "build_flow",
    "flow_distribution",
    "with_logit",
    "FlowVAE",
    "LatentFlow",
    "ConditionalPlanar",
    "ConditionalRadial",
    "ConditionedPlanar",
    "ConditionedRadial",
    "DiagonalScaling",
    "LULinear",
    "Permutation",
    "Planar",
    "Radial",
    "random_permutation",
    "reverse_permutation",
    "FVSBN",
    "NADE",
    "GatedPixelCNN",
    "PixelCNN",
    "WaveNet",
    "CharRNN",
]
