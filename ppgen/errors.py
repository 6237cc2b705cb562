"""Errors ppgen raises on bad input: each message says what is wrong and how to fix it.

The command line prints these (and the environment's OSError: permissions, a full disk) as
one line with exit status 2, no traceback; every other exception is a bug.
"""

import re

__all__ = [
    "PPGenError",
    "DataError",
    "CheckpointError",
    "ConfigError",
    "ConvergenceWarning",
    "DivergenceError",
]


class PPGenError(Exception):
    """Base class of every error caused by the user's input rather than by ppgen.

    The message stays one line: Pyro re-raises an error from inside a traced program with
    the trace's shapes appended ("Trace Shapes: ..."), which is dropped here.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (re.split(r"\n\s*Trace Shapes:", args[0])[0].rstrip(),)
        super().__init__(*args)


class DataError(PPGenError, ValueError):
    """Missing, corrupt or malformed data (files, shapes, dtypes, NaN)."""


class CheckpointError(PPGenError, ValueError):
    """A checkpoint or run directory that is missing, corrupt or from another model."""


class ConfigError(PPGenError, ValueError):
    """An unknown option or an out-of-range value."""


class DivergenceError(PPGenError, FloatingPointError):
    """Training produced a NaN or infinite loss; the checkpoints written before it are kept."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at its iteration cap before reaching its tolerance, so
    the value it returned (and its gradient) is approximate. Issued, not raised: training
    may go on with the approximation, but never silently (``warnings.simplefilter("error",
    ConvergenceWarning)`` turns it into an error)."""
