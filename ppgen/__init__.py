"""ppgen: deep generative models written as Pyro and NumPyro probabilistic programs."""

from ppgen.errors import CheckpointError, ConfigError, DataError, DivergenceError, PPGenError

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergenceError",
    "PPGenError",
    "__version__",
]
