"""How many CPU threads torch uses for a fit.

torch's default is one thread per core. For small models that is slower than one thread
(the work per operation is too small to split), and on a machine where another process
keeps a core busy it is many times slower: the threads wait for each other at every
operation. So mixzoo chooses by the size of the work: one thread below
:data:`SMALL_WORK` multiply-adds per point pass, all of torch's threads above it, unless
``threads`` says otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..errors import MixzooInputError

__all__ = ["choose_threads", "torch_threads", "SMALL_WORK"]

SMALL_WORK = 20_000_000
"""Points x features x clusters below which one thread is used (digits: 1797 x 64 x 10 = 1.2e6)."""


def choose_threads(threads: int | None, n: int, dim: int, n_clusters: int) -> int:
    """The thread count for a fit: ``threads`` when given, else 1 for small work and torch's default otherwise."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise MixzooInputError(f"--threads must be a positive integer, got {threads!r}.")
        return threads
    return 1 if n * dim * n_clusters < SMALL_WORK else torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch threads, then put the previous count back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
