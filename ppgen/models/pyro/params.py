"""Module-local parameters: Pyro ``param`` statements that never touch the global param store.

``pyro.module(name, net)`` copies ``net``'s parameters into the process-wide param store
under ``name$$$...``; a second model that registers a network under the same name then
silently receives the first model's tensors. Pyro's answer is ``PyroModule`` with the global
setting ``pyro.settings.set(module_local_params=True)``, which is a process-wide switch a
library must not flip. We do what that mode does, locally: a model *announces* each of its
own parameters as an effectful ``param`` site (so ``poutine.trace(param_only=True)`` finds
them, which is how :class:`ppgen.inference.pyro.Trainer` and ``pyro.infer.SVI`` collect what
to optimise), while the values stay attributes of the model's ``nn.Module``. Site names are
the familiar ``"encoder$$$layers.0.weight"``, identical for every instance, so a checkpoint
of one instance loads into another.

A handler that *replaces* a param value is honoured: :func:`local_module` then returns a
functional view of the network computing with the substituted tensors
(``torch.func.functional_call``). ``ppgen.inference.pyro.handlers.ParamSubstituteMessenger``
substitutes by full site name; ``poutine.substitute`` matches ``$$$`` names by their short
part (``"layers.0.weight"``), as it does for ``pyro.module``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Self

import numpy as np
import torch
from pyro.params.param_store import param_with_module_name
from pyro.poutine.runtime import am_i_wrapped, effectful
from torch import nn
from torch.distributions import constraints

from ppgen.models.conventions import check_weights

__all__ = [
    "ModuleWeights",
    "get_weights",
    "local_method",
    "local_module",
    "local_param",
    "set_weights",
    "site_to_key",
]


def _own_value(name: str, value: torch.Tensor, **_: object) -> torch.Tensor:
    return value


# One effectful callable built once: a `param` message whose default value is the tensor given.
_announce = effectful(_own_value, type="param")


def local_param(name: str, value: torch.Tensor) -> torch.Tensor:
    """Announce ``value`` as the (unconstrained, real) param site ``name`` and return it.

    Without active handlers this is the identity; under handlers it returns whatever they
    put in the site (``value`` unless a handler substitutes it).
    """
    if not am_i_wrapped():
        return value
    return _announce(name, value, constraint=constraints.real, event_dim=None, name=name)


def local_module(name: str, net: nn.Module) -> Callable[..., torch.Tensor]:
    """Announce every parameter of ``net`` as the param site ``name$$$<param name>``.

    Like ``pyro.module(name, net)`` but module-local (see the module docstring).

    Returns:
        ``net`` itself, or a functional view of it when a handler substituted a parameter.
    """
    substituted = _announce_module(name, net)
    if substituted:
        return functools.partial(torch.func.functional_call, net, substituted)
    return net


def _announce_module(name: str, net: nn.Module) -> dict[str, torch.Tensor]:
    """Announce ``net``'s parameters as param sites; the values handlers substituted, by
    parameter name (empty without handlers)."""
    if not am_i_wrapped():
        return {}
    substituted = {}
    for pname, p in net.named_parameters():
        full = param_with_module_name(name, pname)
        value = _announce(full, p, constraint=constraints.real, event_dim=None, name=full)
        if value is not p:
            substituted[pname] = value
    return substituted


class _Method(nn.Module):
    """``forward`` is ``net.<method>``, so ``functional_call`` can run any method of ``net``."""

    def __init__(self, net: nn.Module, method: str) -> None:
        super().__init__()
        self.net, self.method = net, method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.net, self.method)(*args, **kwargs)


def local_method(name: str, net: nn.Module, method: str) -> Callable[..., Any]:
    """Announce ``net``'s parameters as :func:`local_module` does, and return its method
    ``method`` (e.g. an autoregressive network's ``plated``) computing with whatever the
    handlers put in the param sites: ``getattr(net, method)`` itself when nothing was
    substituted, else a call of it under ``torch.func.functional_call`` with the
    substituted tensors (every parameter the method reads, however it reads it).

    Returns:
        A callable taking the method's own arguments.
    """
    substituted = _announce_module(name, net)
    if not substituted:
        return getattr(net, method)
    wrapper = _Method(net, method)
    tensors = {f"net.{k}": v for k, v in substituted.items()}

    def call(*args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(wrapper, tensors, args, kwargs)

    return call


def site_to_key(name: str) -> str:
    """Map a param site name (``"encoder$$$layers.0.weight"``) to its weight key."""
    return name.replace("$$$", ".")


def get_weights(module: nn.Module) -> dict[str, np.ndarray]:
    """Copy every parameter of ``module`` to numpy, keyed by ``state_dict`` name."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.named_parameters()}


def set_weights(module: nn.Module, weights: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Copy ``weights`` (keys as from :func:`get_weights`, or param site names) into ``module``.

    Raises:
        CheckpointError: The keys or shapes are not exactly this module's.
    """
    weights = {site_to_key(k): v for k, v in weights.items()}
    own = dict(module.named_parameters())
    check_weights(own, weights)
    for key, p in own.items():
        value = weights[key]
        # np.array copies: arrays read from a checkpoint may be read-only.
        value = value.detach() if torch.is_tensor(value) else torch.from_numpy(np.array(value))
        with torch.no_grad():
            p.copy_(value)


class ModuleWeights:
    """Mixin for an ``nn.Module``: its parameters as numpy arrays and back, by
    ``named_parameters()`` name (torch layouts: ``Linear`` weight ``(out, in)``), as every
    ppgen network, transform and flow offers them (:func:`get_weights`, :func:`set_weights`).
    """

    def get_weights(self) -> dict[str, np.ndarray]:
        """Parameters (not buffers) as numpy copies, by ``named_parameters()`` name."""
        return get_weights(self)

    def set_weights(self, weights: Mapping[str, np.ndarray | torch.Tensor]) -> Self:
        """Copy ``weights`` (same keys and shapes as :meth:`get_weights`) in place.

        Returns:
            ``self``.

        Raises:
            CheckpointError: Missing or unexpected keys, or a shape mismatch.
        """
        set_weights(self, weights)
        return self
