r"""Data-parallel SVI on :mod:`torch.distributed` (DistributedDataParallel semantics).

Every process holds a full copy of the model and guide and the same seeded order
of minibatches. Minibatch :math:`B` (global size :math:`|B|`) is cut into one shard per process, :math:`B_r`:
for gradient steps every :math:`P`-th row, ``B[rank::world]`` as
:class:`torch.utils.data.DistributedSampler` does, a random share of the batch (some models normalise over
the batch, as the neural mixture's relevance scores do, and a share of one region of a sorted file would bias
them); for closed-form EM, whose E-step is a sum over points, the rows of :math:`B` in the process's own
contiguous range, rows :math:`\lfloor Nr/P \rfloor` to :math:`\lfloor N(r+1)/P \rfloor - 1` for process
:math:`r` of :math:`P`, so that its passes read only its part of a memory-mapped file. Each process runs the
usual step on its shard, where the data plate scales the shard's log density by :math:`N/|B_r|`. Before the
optimizer step the gradients (EM: the E-step's statistics) are all-reduced with weights :math:`|B_r|/|B|`,

.. math::
    g = \sum_r \frac{|B_r|}{|B|}\, \nabla \Big(\frac{N}{|B_r|} \sum_{n \in B_r} \ell_n\Big)
      = \nabla \Big(\frac{N}{|B|} \sum_{n \in B} \ell_n\Big),

which is exactly the gradient a single process computes on the whole minibatch,
so :math:`k` steps on :math:`P` processes give the parameters of :math:`k` steps of
one process on the same minibatches (for losses that are sums over points, enumerated ones to float
tolerance; Monte Carlo losses draw independent samples on each process, like
more particles). A minibatch that would leave a process without a row is merged into the next
(``DistributedContext.cover``); with a few dozen rows or more per process and minibatch that
practically never happens. The parameters are broadcast from rank 0 before the first step,
buffers after every epoch; only rank 0 shows progress and writes files.

Launch with ``torchrun --nproc_per_node=P -m mixzoo fit ...`` (``gloo`` on CPU,
``nccl`` on GPU, one GPU per process) or call
:func:`torch.distributed.init_process_group` yourself and pass
``distributed=True`` to :func:`mixzoo.fit`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from pyro import poutine
from pyro.infer import SVI
from pyro.infer.util import zero_grads
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..errors import MixzooInputError

__all__ = ["DistributedContext", "DistributedSVI", "init_from_env", "launched_by_torchrun", "leave"]


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def init_from_env(device: str = "cpu") -> None:
    """Join the process group described by torchrun's environment (``gloo`` on CPU, ``nccl`` on CUDA)."""
    if dist.is_initialized():
        return
    if not launched_by_torchrun():
        raise MixzooInputError(
            "distributed training needs a process group: launch with `torchrun --nproc_per_node=N -m mixzoo fit ...` "
            "or call torch.distributed.init_process_group() before mixzoo.fit(..., distributed=True)."
        )
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)


def leave(wait: bool = True) -> None:
    """Leave the process group, by default once every process has got here.

    Without the barrier a process that finishes first (rank 1 does not write the checkpoint) tears down its
    gloo pair while the other still holds it, and one of them can abort at exit. ``wait=False`` is for a
    process that failed: the others may never reach the barrier.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@dataclass(frozen=True)
class DistributedContext:
    """Rank and world size of this process; ``world == 1`` outside a process group."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> DistributedContext:
        if not dist.is_available() or not dist.is_initialized():
            raise MixzooInputError(
                "distributed=True but no torch.distributed process group is initialised; launch with torchrun "
                "or call torch.distributed.init_process_group() first."
            )
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """The device of this process: ``cuda:LOCAL_RANK`` for a CUDA run, else ``device``."""
        if device.type == "cuda" and self.world > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", str(self.rank % torch.cuda.device_count()))))
        return device

    def rows(self, n: int) -> tuple[int, int]:
        """The range ``lo:hi`` of the ``n`` rows this process owns (for shards by range)."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    def mine(self, idx: torch.Tensor, n: int, by_range: bool = False) -> torch.Tensor:
        """Which entries of the minibatch ``idx`` (row indices of ``n`` rows) are this process's, as a mask: those in
        its range of rows (``by_range``), else every ``world``-th from the ``rank``-th."""
        if by_range:
            lo, hi = self.rows(n)
            return (idx >= lo) & (idx < hi)
        return torch.arange(len(idx), device=idx.device) % self.world == self.rank

    def shard(self, idx: torch.Tensor, n: int, by_range: bool = False) -> torch.Tensor:
        """This process's share of a global minibatch of row indices (see :meth:`mine`)."""
        if self.world == 1:
            return idx
        return idx[self.mine(idx, n, True)] if by_range else idx[self.rank :: self.world]

    def cover(self, batches: list[torch.Tensor], n: int, by_range: bool = False) -> list[torch.Tensor]:
        """``batches`` with each one that would leave some process without a row merged into the next (the last into
        the one before), so that every process has a row of every minibatch; the same on every process."""
        if self.world == 1:
            return batches
        bounds = torch.tensor([n * (r + 1) // self.world for r in range(self.world - 1)])

        def covers(b: torch.Tensor) -> bool:
            if not by_range:
                return len(b) >= self.world
            owners = torch.bincount(torch.bucketize(b.cpu(), bounds, right=True), minlength=self.world)
            return bool((owners > 0).all())

        out: list[torch.Tensor] = []
        pending: torch.Tensor | None = None
        for b in batches:
            b = b if pending is None else torch.cat([pending, b])
            if covers(b):
                out.append(b)
                pending = None
            else:
                pending = b
        if pending is not None:
            out = [*out[:-1], torch.cat([out[-1], pending])] if out else [pending]
        return out

    def sum(self, value: float) -> float:
        """Sum a float over all processes."""
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def broadcast(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values into ``tensors`` on every process."""
        ts = [t for t in tensors if t.numel()]
        if self.world == 1 or not ts:
            return
        backend_cpu = dist.get_backend() == "gloo"
        flat = _flatten_dense_tensors([t.detach().cpu() if backend_cpu else t.detach() for t in ts])
        dist.broadcast(flat, src=0)
        with torch.no_grad():
            for t, v in zip(ts, _unflatten_dense_tensors(flat, ts), strict=True):
                t.copy_(v)

    def all_reduce_grads(self, params: list[torch.Tensor], weight: float) -> None:
        """Replace each gradient by :math:`\\sum_r w_r g_r` (zeros stand in for missing gradients)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors([g.detach() * weight for g in grads])
        dist.all_reduce(flat)
        for p, g in zip(params, _unflatten_dense_tensors(flat, grads), strict=True):
            p.grad = g.to(p.dtype)

    def gather(self, obj: object) -> list[object]:
        """Every process's ``obj``, in rank order."""
        out: list[object] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


class DistributedSVI(SVI):
    """:class:`~pyro.infer.SVI` whose step all-reduces the gradients across processes before the update.

    Set :attr:`weight` to :math:`|B_r|/|B|` before each step; the returned loss is
    the weighted sum over processes, the loss of the global minibatch.
    """

    def __init__(self, *args, context: DistributedContext, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.context = context
        self.weight = 1.0 / context.world

    def step(self, *args, **kwargs) -> float:
        with poutine.trace(param_only=True) as capture:
            loss = self.loss_and_grads(self.model, self.guide, *args, **kwargs)
        # the same sites in the same order on every process
        sites = sorted(capture.trace.nodes.items())
        params = [site["value"].unconstrained() for _, site in sites]
        self.context.all_reduce_grads(params, self.weight)
        self.optim(set(params))
        zero_grads(set(params))
        return self.context.sum(float(loss) * self.weight)
