r"""The observation site of a mixture, scored from a table of every component's log density.

Inside the data plate of an enumerated mixture the component index ``y`` has shape
``(K, 1)`` (Pyro's parallel enumeration) or ``(B,)`` (observed labels), and
``pyro.sample("x", component(y), obs=x)`` asks for :math:`\log p_{y}(x_n)` with that
batch shape. Built from the index, a component distribution broadcasts its parameters
against the data, so a diagonal Gaussian evaluates :math:`K \times B \times D`
elementwise terms (and their backward) where a matrix product gives the same
:math:`(B, K)` table from :math:`K \times D` parameters.

:class:`ComponentTable` holds that table, computed by the model from the observed points
while it runs (so every parameter it reads is in the model's trace), and reads the
entries the index selects: the trace has the same site, batch shape and value as with
the component distribution, computed the fast way.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.distributions as dist
import torch
from torch.distributions import constraints

__all__ = ["ComponentTable", "pick"]


def pick(table: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``table[n, k[..., n]]``: the entries of a (B, K) table that a component index selects, with the
    broadcast shape of ``k`` and (B,): (K, B) under Pyro's enumeration (``k`` of shape (K, 1)), (B,) for
    observed labels.

    The same values as ``Vindex(table)[arange(B), k]``, by ``gather``, whose backward is a scatter rather than
    the accumulating ``index_put`` of advanced indexing.
    """
    b, n_components = table.shape
    shape = torch.broadcast_shapes(k.shape, (b,))
    index = k.expand(shape)
    if index.dim() == 1:
        return table.gather(1, index[:, None]).squeeze(1)
    return table.T.expand(*shape[:-2], n_components, b).gather(-2, index)


class ComponentTable(dist.TorchDistribution):
    """:math:`x_n \\mid y = k \\sim p_k`, observed at the points of ``table``: ``log_prob(x)[..., n] = table[n, k]``.

    :param table: (B, K) log densities :math:`\\log p_k(x_n)` of the points this site observes.
    :param k: the component index, any shape that broadcasts with (B,).
    :param sampler: draws ``sample_shape + k.shape + (D,)`` points of the components ``k``;
        only needed where the site is sampled rather than observed.
    :param dim: event size D.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.real_vector

    def __init__(
        self,
        table: torch.Tensor,
        k: torch.Tensor,
        dim: int,
        sampler: Callable[[torch.Tensor, torch.Size], torch.Tensor] | None = None,
    ) -> None:
        self.table, self.k, self.sampler = table, k, sampler
        super().__init__(k.shape, torch.Size([dim]), validate_args=False)

    def expand(self, batch_shape: torch.Size, _instance: ComponentTable | None = None) -> ComponentTable:
        return ComponentTable(self.table, self.k.expand(batch_shape), self.event_shape[0], self.sampler)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p_{k}(x_n)` with the broadcast shape of ``k`` and the points' batch (B,).

        :raises ValueError: if ``value`` is not a (B, D) batch of the table's B points.
        """
        b = self.table.shape[0]
        if value.shape != (b, *self.event_shape):
            raise ValueError(
                f"ComponentTable scores the {b} points its table was computed for, got shape {tuple(value.shape)}"
            )
        return pick(self.table, self.k)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        if self.sampler is None:
            raise NotImplementedError("this ComponentTable was built without a sampler")
        with torch.no_grad():
            return self.sampler(self.k, torch.Size(sample_shape))
