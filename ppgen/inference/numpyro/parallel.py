"""Data-parallel training over several devices with JAX's sharding.

The compiled epoch is the same program on one device and on many: the parameters and the
dataset are replicated over a one-axis device mesh ``("batch",)``, and every minibatch is
constrained to be split along that axis (``jax.lax.with_sharding_constraint``), so XLA
runs each device's share of the batch where it lives and all-reduces the gradient. The
global batch, the data order and every random draw (``jax.random`` values do not depend on
how an array is sharded) are those of single-device training, so the result does not
depend on the number of devices beyond float rounding.

On a CPU, JAX shows one device unless told otherwise: set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` before JAX starts (``ppgen train
... --devices N`` does).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ppgen.errors import ConfigError

__all__ = ["DataParallel"]


class DataParallel:
    """A mesh of the first ``devices`` JAX devices, the batch axis split over it.

    Raises:
        ConfigError: Fewer devices than asked for.
    """

    def __init__(self, devices: int) -> None:
        available = jax.devices()
        if len(available) < devices:
            platform = available[0].platform
            hint = (
                f"; on CPU set XLA_FLAGS=--xla_force_host_platform_device_count={devices} "
                "before JAX starts (`ppgen train ... --devices N` does)"
                if platform == "cpu"
                else ""
            )
            raise ConfigError(
                f"devices={devices}, but JAX sees {len(available)} {platform} device(s){hint}"
            )
        self.world = devices
        self.mesh = Mesh(np.array(available[:devices]), ("batch",))
        self._rows = NamedSharding(self.mesh, PartitionSpec("batch"))
        self._replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def is_main(self) -> bool:
        """Whether this is process 0 (one process drives every local device)."""
        return jax.process_index() == 0

    def shard(self, x: jax.Array) -> jax.Array:
        """``x`` (batch, ...) split along its rows over the devices (inside ``jit``).

        Raises:
            ConfigError: The batch does not split evenly over the devices.
        """
        if x.shape[0] % self.world:
            raise ConfigError(
                f"a batch of {x.shape[0]} does not split over {self.world} devices; use a "
                f"batch size divisible by {self.world}"
            )
        return jax.lax.with_sharding_constraint(x, self._rows)

    def replicate(self, tree: Any) -> Any:
        """Every array of ``tree`` copied to every device of the mesh."""
        return jax.device_put(tree, self._replicated)

    def any(self, flag: bool) -> bool:
        """``flag`` (one process sees every local device's result)."""
        return bool(flag)
