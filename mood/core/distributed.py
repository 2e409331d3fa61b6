"""Training on several processes with PyTorch's own tools: ``torchrun`` and DistributedDataParallel.

A script (or ``python -m mood``) launched by ``torchrun`` calls :func:`init` once; from then on
:func:`mood.core.engine.fit` trains the task wrapped in DDP, every rank taking its share of each global
batch, and :func:`mood.core.features.extract_pools` extracts a shard per rank and gathers them. Without
``torchrun`` (no ``WORLD_SIZE`` in the environment, or a world of one) every function here is a
no-op and ``mood`` runs as a single process.

What stays the same at any world size:

- **Batches.** ``batch_size`` is the *global* batch: each epoch's order is drawn from the same seeded
  generator on every rank, and rank ``r`` of ``W`` takes the ``r``-th of ``W`` equal slices of every
  global batch. DDP averages the gradients, so a step sees the same images and the same mean
  gradient as a single process with that batch (equal up to floating-point summation order when the
  task draws no random numbers; masks, views and dropout are drawn per rank from streams seeded by
  ``(seed, epoch, rank)``).
- **Checkpoints.** Rank 0 alone writes ``last.pt``, the log and the final backbone (the others wait
  at a barrier), so the run folder is that of a single process; a run resumes from it at any world
  size, on a file system every rank sees.

BatchNorm statistics stay per rank (the small CNN of the Unleashing Mask chapter has BatchNorm; the
ViTs have LayerNorm only).

Launch (one node, 4 GPUs; several nodes add ``--nnodes``, ``--node-rank`` and a rendezvous address)::

    torchrun --standalone --nproc-per-node=4 -m mood run --protocol multi-class --profile gpu
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(backend: str | None = None, timeout_s: float = 1800.0) -> World:
    """Joins the process group ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); without it (or with a world of one), nothing.

    Args:
        backend: ``"nccl"`` (default when CUDA is present: each rank takes GPU ``LOCAL_RANK``) or
            ``"gloo"`` (default on CPU).
    Raises:
        RuntimeError: a world of several processes asks for more GPUs than the node has.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or dist.is_initialized():
        return world()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"rank with LOCAL_RANK={local} but {torch.cuda.device_count()} GPUs on this node: "
                               f"launch at most that many processes per node (torchrun --nproc-per-node)")
        torch.cuda.set_device(local)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return world()


def close() -> None:
    """Leaves the process group (nothing without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> World:
    """The current process's :class:`World` (a world of one when no process group is up)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main() -> bool:
    """Whether this process writes shared files (rank 0, or the only process)."""
    return world().is_main


def barrier() -> None:
    """Waits for every rank (nothing in a world of one)."""
    if world().size > 1:
        dist.barrier()


def shard(n: int, w: World | None = None) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one, rank order)."""
    w = w or world()
    base, extra = divmod(n, w.size)
    start = w.rank * base + min(w.rank, extra)
    return slice(start, start + base + (w.rank < extra))


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_rows(part: torch.Tensor) -> torch.Tensor:
    """Every rank's ``part [n_r, ...]`` concatenated in rank order, on every rank (``[sum n_r, ...]``,
    on ``part``'s device); ``part`` itself in a world of one."""
    w = world()
    if w.size == 1:
        return part
    dev = _comm_device()
    sizes = [torch.zeros((), dtype=torch.long, device=dev) for _ in range(w.size)]
    dist.all_gather(sizes, torch.tensor(len(part), device=dev))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=dev)
    padded[: len(part)] = part.to(dev)
    out = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes)]).to(part.device)


def all_mean(t: torch.Tensor) -> torch.Tensor:
    """The mean of ``t`` over ranks (``t`` in a world of one)."""
    if world().size == 1:
        return t
    out = t.detach().clone()
    dist.all_reduce(out)
    return out / world().size


def all_true(flag: torch.Tensor) -> torch.Tensor:
    """Whether ``flag`` (a boolean scalar) holds on every rank."""
    if world().size == 1:
        return flag
    out = flag.to(torch.int32)
    dist.all_reduce(out, op=dist.ReduceOp.MIN)
    return out.bool()
