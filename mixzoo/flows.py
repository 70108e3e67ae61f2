r"""K normalizing flows evaluated in one batched pass.

:class:`ComponentFlows` holds the densities :math:`p_k(x)`, :math:`k = 1..K`, of the
components of a flow mixture and returns :math:`\log p_k(x_n)` as an (N, K)
tensor, so that enumeration of the cluster site broadcasts over it. Each
component is

.. math:: \log p_k(x) = \log \mathcal N\big(f_k(x); \mu_k, \operatorname{diag}\sigma_k^2\big)
          + \log \lvert \det \partial f_k(x) / \partial x \rvert ,

with :math:`f_k` a masked autoregressive flow (MAF; Papamakarios et al., 2017), its
rational-quadratic spline variant (NSF; Durkan et al., 2019) or a RealNVP-style
affine coupling flow (Dinh et al., 2017), all built by zuko.
Two ways to hold K flows:

- ``independent=True`` (Ciobanu 2021: a separate MADE and base per component):
  K zuko flows with their parameters stacked along a leading K dimension and
  evaluated with :func:`torch.func.vmap` over a single template, one batched pass
  instead of a Python loop (MAF and NSF; RealNVP's coupling layers write in place,
  which :func:`~torch.func.vmap` cannot batch).
- ``independent=False``: one zuko flow conditioned on a one-hot component code,
  evaluated on the (K·N) stacked inputs in one pass; the components share hidden
  units, which suits many components on small data.

Base distributions: ``"normal"`` (:math:`\mathcal N(0, I)`), ``"paper"`` (Ciobanu 2021's
:math:`\mathcal N(\mu_k, 0.1 I)` with :math:`\mu_k \sim U(0,1)^D`, meant for
data scaled to [0, 1]) or explicit means set through :meth:`set_base`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Literal

import torch
import zuko
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

__all__ = ["ComponentFlows", "FlowKind", "BaseKind"]

FlowKind = Literal["maf", "nsf", "realnvp"]
BaseKind = Literal["normal", "paper"]


def _make_flow(kind: FlowKind, dim: int, context: int, transforms: int, hidden: Sequence[int]) -> zuko.flows.Flow:
    if kind == "maf":
        return zuko.flows.MAF(dim, context=context, transforms=transforms, hidden_features=tuple(hidden))
    if kind == "nsf":
        return zuko.flows.NSF(dim, context=context, transforms=transforms, hidden_features=tuple(hidden))
    if kind == "realnvp":
        if dim < 2 and context == 0:
            raise ValueError("a coupling flow needs at least 2 features; use kind='maf'")
        return zuko.flows.RealNVP(dim, context=context, transforms=transforms, hidden_features=tuple(hidden))
    raise ValueError(f"unknown flow kind {kind!r}; choose 'maf', 'nsf' or 'realnvp'")


class _TransformCall(nn.Module):
    """``x -> (f(x), log|det J_f(x)|)`` of a zuko flow's transform, for :func:`functional_call`."""

    def __init__(self, flow: zuko.flows.Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        t = self.flow.transform(None)
        return t.inv(x) if inverse else t.call_and_ladj(x)


def _key(name: str) -> str:
    return name.replace(".", "__")


class ComponentFlows(nn.Module):
    """K normalizing flows with per-component diagonal Gaussian bases.

    :param dim: number of features D.
    :param n_components: number of flows K.
    :param kind: ``"maf"``, ``"nsf"`` (neural spline) or ``"realnvp"``.
    :param transforms: number of flow layers per component.
    :param hidden: hidden layer sizes of each layer's network.
    :param independent: separate parameters per component (vmapped) or one shared conditional flow.
    :param base: ``"normal"`` or ``"paper"`` (see the module docstring).
    :param generator: random source for the ``"paper"`` base means.
    """

    def __init__(
        self,
        dim: int,
        n_components: int,
        *,
        kind: FlowKind = "maf",
        transforms: int = 3,
        hidden: Sequence[int] = (64, 64),
        independent: bool = True,
        base: BaseKind = "normal",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim, self.n_components, self.independent = int(dim), int(n_components), bool(independent)
        k, d = self.n_components, self.dim
        if independent and kind == "realnvp":
            raise ValueError(
                "independent RealNVP components cannot be vmapped (zuko's coupling layer writes in place); "
                "use independent=False (one flow conditioned on the component) or kind='maf'"
            )
        if independent:
            flows = [_TransformCall(_make_flow(kind, d, 0, transforms, hidden)) for _ in range(k)]
            params, _ = stack_module_state(flows)
            self.stacked = nn.ParameterDict({_key(n): nn.Parameter(p) for n, p in params.items()})
            # masks and orders are deterministic, hence the same for every component: kept once, not vmapped
            buffers = dict(flows[0].named_buffers())
            for n, b in buffers.items():
                self.register_buffer("shared_" + _key(n), b.clone())
            self._buffer_names = list(buffers)
            template = copy.deepcopy(flows[0]).to("meta")
            object.__setattr__(self, "_template", template)  # not a submodule: no parameters of its own
        else:
            self.shared = _TransformCall(_make_flow(kind, d, k, transforms, hidden))
        if base == "normal":
            loc, scale = torch.zeros(k, d), torch.ones(k, d)
        elif base == "paper":
            loc, scale = torch.rand(k, d, generator=generator), torch.full((k, d), math.sqrt(0.1))
        else:
            raise ValueError(f"unknown base {base!r}; choose 'normal' or 'paper'")
        self.register_buffer("base_loc", loc)
        self.register_buffer("base_scale", scale)

    def set_base(self, loc: torch.Tensor, scale: torch.Tensor | float | None = None) -> None:
        """Set the base means (K, D) and optionally the base standard deviations."""
        with torch.no_grad():
            self.base_loc.copy_(loc)
            if scale is not None:
                value = torch.as_tensor(scale, dtype=self.base_scale.dtype, device=self.base_scale.device)
                self.base_scale.copy_(value.expand_as(self.base_scale))

    def _stacked_state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = {n: self.stacked[_key(n)] for n in self._param_names()}
        buffers = {n: getattr(self, "shared_" + _key(n)) for n in self._buffer_names}
        return params, buffers

    def _param_names(self) -> list[str]:
        return [n for n, _ in self._template.named_parameters()]

    def transform(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, ladj)`` of every component for every point: shapes (K, N, D) and (K, N), in one pass."""
        if self.independent:
            params, buffers = self._stacked_state()
            call = lambda p, b: functional_call(self._template, (p, b), (x,))  # noqa: E731
            return vmap(call, in_dims=(0, None))(params, buffers)
        k, n = self.n_components, x.shape[0]
        context = torch.eye(k, device=x.device, dtype=x.dtype)[:, None, :].expand(k, n, k)
        return self.shared.flow.transform(context).call_and_ladj(x.expand(k, n, self.dim))

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(K, N) log density of the per-component bases at ``z`` (K, N, D)."""
        loc, scale = self.base_loc[:, None, :], self.base_scale[:, None, :]
        return torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) log densities :math:`\\log p_k(x_n)` in one batched pass."""
        z, ladj = self.transform(x)
        return (self.base_log_prob(z) + ladj).transpose(0, 1)

    def component_log_prob(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """(N,) log density of component ``k`` alone (the reference for the batched pass)."""
        if self.independent:
            params, buffers = self._stacked_state()
            pk = {n: v[k] for n, v in params.items()}
            z, ladj = functional_call(self._template, (pk, buffers), (x,))
        else:
            context = torch.zeros(x.shape[0], self.n_components, device=x.device, dtype=x.dtype)
            context[:, k] = 1
            z, ladj = self.shared.flow.transform(context).call_and_ladj(x)
        base = torch.distributions.Normal(self.base_loc[k], self.base_scale[k]).log_prob(z).sum(-1)
        return base + ladj

    @torch.no_grad()
    def sample(self, n: int, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples (n, D) from component ``k`` (base sample pushed through the inverse flow)."""
        eps = torch.randn(n, self.dim, generator=generator).to(self.base_loc.device)
        z = self.base_loc[k] + self.base_scale[k] * eps
        if self.independent:
            params, buffers = self._stacked_state()
            pk = {name: v[k] for name, v in params.items()}
            return functional_call(self._template, (pk, buffers), (z,), {"inverse": True})
        context = torch.zeros(n, self.n_components, device=z.device, dtype=z.dtype)
        context[:, k] = 1
        return self.shared.flow.transform(context).inv(z)
