"""Data-parallel training: one process per core (CPU, gloo) or per GPU (NCCL).

spconv's CPU kernels must run single-threaded, so a CPU trainer uses one core; N processes that
each train on their own scenes and average their gradients after every backward use N cores (and
N machines, with ``torchrun``). Gradients are averaged explicitly (:func:`average_gradients`)
instead of through ``DistributedDataParallel``, whose hooks only run through ``forward()`` while
our models train through ``forward_train``; parameters without a gradient on a rank (a SoftGroup
batch without proposals) count as zeros, so every rank takes the same optimizer step.

Two ways to start: ``ros2-inst3d train CONFIG --nproc N`` spawns N processes on this machine with
the rendezvous on 127.0.0.1 (nothing leaves the loopback interface), or ``torchrun`` sets
``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` / ``MASTER_PORT`` itself. Rank 0 writes the log and
checkpoints and validates; the others wait at a barrier.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the data-parallel trainers (``world_size`` 1: not parallel)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


def init_process_group(device: Any) -> ProcessGroup:
    """Join the process group that ``WORLD_SIZE`` > 1 in the environment announces (gloo on CPU,
    NCCL on CUDA); without it, the single-process group."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return ProcessGroup(dist.get_rank(), dist.get_world_size())


def barrier(group: ProcessGroup) -> None:
    if group.parallel:
        import torch.distributed as dist

        dist.barrier()


def average_gradients(params: Iterable[Any], group: ProcessGroup) -> None:
    """Replace every parameter's gradient by its mean over the ranks (one flat all-reduce)."""
    if not group.parallel:
        return
    import torch
    import torch.distributed as dist

    params = list(params)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= group.world_size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _spawned(rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank),
                       "WORLD_SIZE": str(world_size), "MASTER_ADDR": LOOPBACK,
                       "MASTER_PORT": str(port)})
    try:
        fn(*args)
    finally:
        destroy_process_group()


def spawn(fn: Callable[..., Any], nproc: int, *args: Any) -> None:
    """Run ``fn(*args)`` in ``nproc`` fresh processes that form one process group on loopback
    (``fn`` must be importable: a module-level function). Raises if any process fails."""
    import torch.multiprocessing as mp

    mp.start_processes(_spawned, args=(nproc, free_loopback_port(), fn, args), nprocs=nproc,
                       start_method="spawn")


__all__ = ["LOOPBACK", "ProcessGroup", "average_gradients", "barrier", "destroy_process_group",
           "init_process_group", "spawn"]
