"""Data-parallel training over several processes with ``torch.distributed``.

One process per device, started by ``torchrun`` (or ``ppgen train ... --devices N``, which
starts it): every process holds the whole model, takes its share of every global minibatch,
computes its gradient, and the gradients are averaged with one ``all_reduce`` per update
(what ``DistributedDataParallel`` does, on the parameters a Pyro program announces rather
than on an ``nn.Module``'s). Gloo on CPU, NCCL on CUDA.

The result does not depend on the number of processes beyond float rounding:

- the global batch and the data order are those of single-process training (every process
  computes the same schedule and takes rows ``[r b/P, (r+1) b/P)`` of each batch);
- per-batch noise (binarization) is drawn for the global batch, then sharded;
- every latent draw inside the ``"data"`` plate is the one single-process training makes:
  :class:`ShardedDraws` draws the site for the global batch (the distribution's parameters
  tiled ``P`` times along the data dimension, so the generator advances exactly as in one
  process) and keeps this process's rows;
- the loss is a sum over examples scaled by ``num_data / batch`` (ELBO, IWAE, the
  semi-supervised bound), so the average of the processes' gradients is the gradient of
  the whole batch. An objective that couples the examples of a batch (MMD, batch
  statistics) sees only its process's rows.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as tdist
from pyro.distributions import Independent
from pyro.distributions.torch_distribution import ExpandedDistribution, MaskedDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

from ppgen.errors import ConfigError

__all__ = ["DataParallel", "ShardedDraws", "tile_rows"]

DATA = "data"


def tile_rows(fn: Any, dim: int, times: int) -> Any:
    """The distribution ``fn`` with its batch dimension ``dim`` (negative, counted from the
    right of ``fn.batch_shape``) repeated ``times`` times: row ``r * n + i`` of the result
    has the parameters of row ``i`` of ``fn``.

    Raises:
        ConfigError: A distribution whose parameters cannot be tiled (rebuilt from its
            ``arg_constraints`` parameters with the batch dims leading).
    """
    batch = tuple(fn.batch_shape)
    if isinstance(fn, Independent):
        base = tile_rows(fn.base_dist, dim - fn.reinterpreted_batch_ndims, times)
        return Independent(base, fn.reinterpreted_batch_ndims)
    if isinstance(fn, MaskedDistribution):
        mask = fn._mask
        if torch.is_tensor(mask) and mask.dim() >= -dim and mask.shape[dim] > 1:
            mask = torch.cat([mask] * times, dim=dim)
        return MaskedDistribution(tile_rows(fn.base_dist, dim, times), mask)
    if isinstance(fn, ExpandedDistribution):
        shape = list(batch)
        shape[dim] *= times
        base = fn.base_dist
        base_batch = tuple(base.batch_shape)
        if len(base_batch) >= -dim and base_batch[dim] > 1:
            base = tile_rows(base, dim, times)
        return base.expand(torch.Size(shape))
    names = [n for n in getattr(fn, "arg_constraints", {}) if n in vars(fn)]
    if "logits" in names and "probs" in names:  # one was computed lazily from the other
        names.remove("probs")
    params = {}
    for name in names:
        value = vars(fn)[name]
        if not torch.is_tensor(value) or tuple(value.shape[: len(batch)]) != batch:
            raise ConfigError(_refusal(fn))
        params[name] = torch.cat([value] * times, dim=dim - (value.dim() - len(batch)))
    try:
        return type(fn)(**params, validate_args=False)
    except (TypeError, ValueError):
        raise ConfigError(_refusal(fn)) from None


def _refusal(fn: Any) -> str:
    return (
        f"data-parallel training cannot draw a {type(fn).__name__} site as one process "
        "would (its parameters cannot be tiled along the data plate); train on one device"
    )


class ShardedDraws(Messenger):
    """Draw each latent site of the ``"data"`` plate for the global batch; keep our rows.

    Around an objective on process ``rank`` of ``world``, whose minibatch holds rows
    ``[rank * n, (rank + 1) * n)`` of the global batch: every unobserved, not yet drawn,
    not enumerated sample site inside the ``"data"`` plate is sampled from its distribution
    tiled ``world`` times along the data dimension (:func:`tile_rows`) and sliced, so the
    random stream, and every value, is that of single-process training. Sites outside the
    plate are drawn as usual (every process holds the same generator state, so the same
    value).
    """

    def __init__(self, rank: int, world: int) -> None:
        super().__init__()
        self.rank, self.world = int(rank), int(world)

    def _pyro_sample(self, msg: Message) -> None:
        if (
            msg["done"]
            or msg["is_observed"]
            or msg["value"] is not None
            or site_is_subsample(msg)
            or msg["infer"].get("enumerate")
        ):
            return
        frame = next((f for f in msg["cond_indep_stack"] if f.name == DATA), None)
        if frame is None or self.world == 1:
            return
        fn = msg["fn"]
        size = fn.batch_shape[frame.dim]
        value = tile_rows(fn, frame.dim, self.world)(*msg["args"], **msg["kwargs"])
        axis = value.dim() - len(fn.event_shape) + frame.dim
        msg["value"] = value.narrow(axis, self.rank * size, size)
        msg["done"] = True


class DataParallel:
    """This process's place among ``devices`` processes of one ``torch.distributed`` job.

    Joins the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) unless one is already initialised.

    Raises:
        ConfigError: No distributed environment (not started by ``torchrun``), or a number
            of processes other than ``devices``.
    """

    def __init__(self, devices: int) -> None:
        if not tdist.is_available():
            raise ConfigError("this torch build has no torch.distributed; train on one device")
        if not tdist.is_initialized():
            if "WORLD_SIZE" not in os.environ:
                raise ConfigError(
                    f"devices={devices} on Pyro runs one process per device: start the "
                    f"script with `torchrun --nproc_per_node {devices} ...` (`ppgen train "
                    f"... --devices {devices}` does so itself)"
                )
            tdist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        self.rank, self.world = tdist.get_rank(), tdist.get_world_size()
        if self.world != devices:
            raise ConfigError(
                f"devices={devices}, but torch.distributed runs {self.world} processes; "
                f"start as many processes as devices"
            )
        self.draws = ShardedDraws(self.rank, self.world)

    @property
    def is_main(self) -> bool:
        """Whether this is process 0, which writes checkpoints and metrics."""
        return self.rank == 0

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch ``x`` (batch, ...).

        Raises:
            ConfigError: The batch does not split evenly over the processes.
        """
        n = len(x)
        if n % self.world:
            raise ConfigError(
                f"a batch of {n} does not split over {self.world} processes; use a batch "
                f"size divisible by {self.world}"
            )
        size = n // self.world
        return x[self.rank * size : (self.rank + 1) * size]

    def mean(self, value: float) -> float:
        """The mean over processes of a per-process number (a loss)."""
        t = torch.tensor([value], dtype=torch.float64)
        tdist.all_reduce(t)
        return float(t.item()) / self.world

    def average_gradients(self, grads: list[torch.Tensor]) -> None:
        """Replace every process's gradients by their mean over processes, in place (one
        flat ``all_reduce``)."""
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        tdist.all_reduce(flat)
        flat /= self.world
        start = 0
        for g in grads:
            g.copy_(flat[start : start + g.numel()].view_as(g))
            start += g.numel()

    def any(self, flag: bool) -> bool:
        """Whether any process says ``flag`` (so all stop together)."""
        t = torch.tensor([int(bool(flag))])
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())
