"""Data-parallel training on top of ``torch.distributed``: no launcher or transport of our own.

Processes are started by torchrun (``torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and the rendezvous variables; :func:`setup` reads them and
joins the process group (gloo on CPU, NCCL on CUDA). With none of them set, training is the
ordinary single process and nothing here touches ``torch.distributed``.

How the data is split. Every rank draws the SAME epoch permutation from the shared seed; global
step ``s`` covers ``perm[s·B : (s+1)·B]`` with ``B = batch_size × world_size``, and rank ``r`` takes
its ``r``-th near-equal piece of that global batch (:func:`shard`). That is what a
``DistributedSampler(shuffle=True, seed=seed)`` with ``set_epoch(epoch)`` gives each rank (same
permutation, a disjoint 1/world of it, a new order every epoch), except that the sampler pads the
epoch with repeated images when it does not divide evenly, and we don't: each rank scales its
mean loss by ``its images × world / global images``, so after DDP averages the gradients the
update is exactly the one a single process takes on the whole global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError


@dataclass
class DistInfo:
    """Where this process stands: rank among ``world`` processes, and among ``local_world`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False  # True when setup() created the process group (so teardown() destroys it)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def env_local_world_size() -> int:
    """``LOCAL_WORLD_SIZE`` as set by torchrun: processes on this machine (1 when not launched by it)."""
    try:
        return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        return 1


def auto_device_for_processes(device: torch.device) -> torch.device:
    """What ``--device auto`` means under torchrun: CUDA only with a GPU for each process on this machine, else the CPU."""
    if device.type == "cuda" and env_local_world_size() > torch.cuda.device_count():
        return torch.device("cpu")
    return device


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun prepared (if any); returns this rank's info and device.

    On CUDA each process takes ``cuda:LOCAL_RANK``. An already-initialised group (the caller made
    it) is used as is and left for the caller to destroy.
    """
    import torch.distributed as dist

    world = env_world_size()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo(), device
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE is set but this torch build has no torch.distributed")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device: multi-process training runs on cpu (gloo) or cuda (nccl), not {device.type}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, local_world, owns)
    return info, device


def teardown(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def threads_per_process(requested: int, info: DistInfo) -> int:
    """``requested`` if set; else 0 (share: ``set_threads`` splits the cores among this machine's
    processes, torchrun's and any other mnist-vae process) or, with sharing off, the cores / processes."""
    from .share import cores, enabled

    if requested or enabled():
        return requested
    return max(1, cores() // max(1, info.local_world))


def shard(n: int, info: DistInfo) -> slice:
    """This rank's piece of a global batch of ``n``: near-equal contiguous pieces, rank order."""
    base, extra = divmod(n, info.world)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))


def all_reduce_(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks in place and return it; identity for a single process."""
    if info.active:
        import torch.distributed as dist

        dist.all_reduce(values)
    return values


def broadcast(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects); identity for a single process."""
    if not info.active:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op for a single process)."""
    if info.active:
        import torch.distributed as dist

        dist.barrier()
