"""Backend-free checks of the dense autoregressive models (FVSBN, NADE, MADE as a density),
written once in numpy for both backends' ``ar_dense`` modules and models."""

from __future__ import annotations

from typing import Any

from ppgen.errors import ConfigError, DataError

__all__ = ["check_context", "check_head", "check_no_context", "check_prefix_count"]


def check_head(name: str, head: Any, num_params: int, bernoulli_only: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``head`` gives ``num_params`` parameters per entry.

    Args:
        name: The model's name, for the message.
        head: A conditional family (``Bernoulli()``, ``Categorical(K)``, ...).
        num_params: The model's ``num_params``.
        bernoulli_only: The model supports only the Bernoulli head (FVSBN, NADE).
    """
    got = getattr(head, "num_params", None)
    if got != num_params:
        what = "only the Bernoulli head" if bernoulli_only else f"a head with {num_params}"
        raise ConfigError(
            f"{name} supports {what} (num_params {num_params}), got "
            f"{type(head).__name__} with num_params {got}"
        )


def check_no_context(name: str, context: Any) -> None:
    """Raise :class:`ConfigError` when an unconditional model is given a context."""
    if context is not None:
        raise ConfigError(f"{name} is unconditional; it takes no context")


def check_context(name: str, context_dim: int, context: Any) -> None:
    """Raise :class:`ConfigError` unless a context is given exactly when the model was
    built with one (``context_dim > 0``)."""
    if (context is None) != (context_dim == 0):
        raise ConfigError(
            f"this {name} was built with context_dim={context_dim}; "
            + ("pass a context" if context is None else "it takes no context")
        )


def check_prefix_count(prefix: Any, dim: int) -> int:
    """Check a completion prefix ``(x_given, count)`` of a ``D``-entry model; return ``count``.

    Raises:
        DataError: Not a pair, or ``count`` not an integer in ``[0, D]``.
    """
    if not isinstance(prefix, tuple) or len(prefix) != 2:
        raise DataError("prefix must be a pair (x_given of shape (*batch, D), count)")
    count = prefix[1]
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= dim:
        raise DataError(f"prefix count must be an integer in [0, {dim}], got {count!r}")
    return count
