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
  K zuko flows with their parameters stacked along a leading K dimension (K, out, in)
  and evaluated in one batched pass instead of a Python loop (MAF and NSF; RealNVP's
  coupling layers write in place, which cannot be batched this way). Each masked
  linear layer of the K MADE networks is one :func:`torch.baddbmm`, and the affine or
  rational-quadratic spline step acts on all K components at once
  (:func:`_batched_autoregressive`); flows of another structure (one feature, where
  zuko uses an element-wise transform) go through :func:`torch.func.vmap` over a
  single template. Either way the densities are those of the K zuko flows.
- ``independent=False``: one zuko flow conditioned on a one-hot component code,
  evaluated on the (K·N) stacked inputs in one pass; the components share hidden
  units, which suits many components on small data.

Base distributions: ``"normal"`` (:math:`\mathcal N(0, I)`), ``"paper"`` (Ciobanu 2021's
:math:`\mathcal N(\mu_k, 0.1 I)` with :math:`\mu_k \sim U(0,1)^D`, meant for
data scaled to [0, 1]) or explicit means set through :meth:`set_base`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
import zuko
from torch import nn
from torch.autograd.function import once_differentiable
from torch.func import functional_call, stack_module_state, vmap
from zuko.flows.autoregressive import MaskedAutoregressiveTransform
from zuko.nn import MaskedLinear, MaskedMLP
from zuko.transforms import MonotonicAffineTransform, MonotonicRQSTransform

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


class _Layer(NamedTuple):
    """Names of one masked linear layer's stacked weight (K, out, in), bias (K, out) and shared mask (out, in)."""

    weight: str
    bias: str
    mask: str
    relu: bool


class _Step(NamedTuple):
    """One masked autoregressive transform: its MADE layers and its univariate transform."""

    layers: tuple[_Layer, ...]
    univariate: Literal["affine", "rqs"]
    total: int
    bins: int
    bound: float
    slope: float


def _default(fn: object, name: str) -> float:
    return float(inspect.signature(fn).parameters[name].default)


def _univariate(t: MaskedAutoregressiveTransform) -> tuple[Literal["affine", "rqs"], int, float, float] | None:
    """``(kind, bins, bound, slope)`` of an autoregressive transform's univariate map, or ``None`` if unsupported."""
    u = t.univariate
    if u is MonotonicAffineTransform:
        return "affine", 0, 0.0, _default(MonotonicAffineTransform, "slope")
    if isinstance(u, functools.partial) and u.func is MonotonicRQSTransform and not u.args:
        if set(u.keywords) - {"slope", "bound"}:
            return None
        bound = float(u.keywords.get("bound", _default(MonotonicRQSTransform, "bound")))
        slope = float(u.keywords.get("slope", _default(MonotonicRQSTransform, "slope")))
        bins = int(t.shapes[0][0])
        if [tuple(s) for s in t.shapes] != [(bins,), (bins,), (bins - 1,)]:
            return None
        return "rqs", bins, bound, slope
    return None


def _plan(template: nn.Module) -> tuple[_Step, ...] | None:
    """The layers of a MAF/NSF template as batched steps, or ``None`` when its structure is another one."""
    transforms = template.flow.transform
    if not isinstance(transforms, zuko.lazy.LazyComposedTransform):
        return None
    steps = []
    for i, t in enumerate(transforms.transforms):
        if type(t) is not MaskedAutoregressiveTransform or type(t.hyper) is not MaskedMLP:
            return None
        uni = _univariate(t)
        if uni is None:
            return None
        mods = list(t.hyper)
        if len(mods) % 2 != 1:
            return None
        prefix = f"flow.transform.transforms.{i}.hyper."
        layers = []
        for j in range(0, len(mods), 2):
            last = j == len(mods) - 1
            if type(mods[j]) is not MaskedLinear or mods[j].bias is None:
                return None
            if not last and type(mods[j + 1]) is not nn.ReLU:
                return None
            name = f"{prefix}{j}."
            layers.append(_Layer(name + "weight", name + "bias", name + "mask", not last))
        kind, bins, bound, slope = uni
        steps.append(_Step(tuple(layers), kind, int(t.total), bins, bound, slope))
    return tuple(steps)


class _MaskedMLP(torch.autograd.Function):
    """K MADE networks at once with a hand-written backward pass (see :func:`_masked_mlp`).

    The backward pass reuses the saved activations and masked weights, clears the gradient of each ReLU in place,
    and, for an input shared by all K, computes the first layer as one (K·out, in) x (in, N) product.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, relus: tuple[bool, ...], *tensors: torch.Tensor):
        weights, biases, masks = tensors[0::3], tensors[1::3], tensors[2::3]
        masked = [m * w for w, m in zip(weights, masks, strict=True)]
        h, inputs = x, []
        for w, b, relu in zip(masked, biases, relus, strict=True):
            inputs.append(h)
            h = _linear(h, w, b)
            if relu:
                h = h.relu_()
        ctx.relus = relus
        ctx.save_for_backward(*inputs, *masked, *masks)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        n = len(ctx.relus)
        saved = ctx.saved_tensors
        inputs, masked, masks = saved[:n], saved[n : 2 * n], saved[2 * n :]
        grads: list[torch.Tensor | None] = [None] * (3 * n)
        grad_x = None
        for i in reversed(range(n)):
            h, w = inputs[i], masked[i]
            grads[3 * i] = _weight_grad(grad, h).mul_(masks[i])
            grads[3 * i + 1] = grad.sum(-1)
            if i > 0:
                grad = _input_grad(grad, w, h)
                if ctx.relus[i - 1]:  # h is the ReLU's output: its gradient is zero where h is
                    torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad)
            elif ctx.needs_input_grad[0]:
                grad_x = _input_grad(grad, w, h)
        return grad_x, None, *grads


def _linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``weight @ h + bias`` for ``weight`` (K, out, in), ``bias`` (K, out), ``h`` (K, in, N) or (in, N) shared by all K."""
    if h.dim() == 2:
        k, out, d = weight.shape
        return torch.addmm(bias.reshape(-1, 1), weight.reshape(k * out, d), h).view(k, out, -1)
    return torch.baddbmm(bias.unsqueeze(-1), weight, h)


def _weight_grad(grad: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Gradient (K, out, in) of :func:`_linear`'s weight, from that of its output ``grad`` (K, out, N)."""
    if h.dim() == 2:  # transposed, (in, N) x (N, K·out): far faster than (K·out, N) x (N, in) for a few inputs
        return torch.mm(h.contiguous(), grad.flatten(0, 1).t()).t().view(*grad.shape[:2], -1)
    return torch.bmm(grad, h.transpose(1, 2))


def _input_grad(grad: torch.Tensor, weight: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Gradient of :func:`_linear`'s input ``h``, from that of its output ``grad`` (K, out, N)."""
    if h.dim() == 2:
        return torch.mm(weight.flatten(0, 1).t(), grad.flatten(0, 1))
    return torch.bmm(weight.transpose(1, 2), grad)


def _masked_mlp(
    h: torch.Tensor, layers: Sequence[_Layer], params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """K MADE networks at once, features first: ``h`` (K, in, N) or (in, N) shared by all K, returns (K, out, N).

    With the N points along the last axis every product is (out, in) x (in, N), whose weight gradient
    (out, N) x (N, in) stays fast on the CPU also for the narrow output layer.
    """
    tensors = [t for layer in layers for t in (params[layer.weight], params[layer.bias], buffers[layer.mask])]
    return _MaskedMLP.apply(h, tuple(layer.relu for layer in layers), *tensors)


def _squash(v: torch.Tensor, c: float) -> torch.Tensor:
    """zuko's soft bound :math:`v / (1 + c |v|)` of unconstrained spline and scale parameters."""
    return v / v.abs().mul_(c).add_(1)


class _SquashExp(torch.autograd.Function):
    r""":math:`\exp(v / (1 + c |v|))`, with the derivative :math:`\exp(\cdot) / (1 + c |v|)^2` in one expression."""

    @staticmethod
    def forward(v: torch.Tensor, c: float) -> tuple[torch.Tensor, torch.Tensor]:
        denominator = v.abs().mul_(c).add_(1)
        return torch.div(v, denominator).exp_(), denominator

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
        ctx.save_for_backward(*output)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor, _: torch.Tensor) -> tuple:
        out, denominator = ctx.saved_tensors
        return grad * out / (denominator * denominator), None


def _squash_exp(v: torch.Tensor, c: float) -> torch.Tensor:
    """``_squash(v, c).exp()`` with a shorter backward pass."""
    return _SquashExp.apply(v, c)[0]


class _Affine(torch.autograd.Function):
    r"""zuko's monotonic affine map :math:`y = t + x e^{s}`, :math:`s = u / (1 + c |u|)`, and its log-determinant
    :math:`\sum_d s_d`, with the derivative :math:`\partial s / \partial u = 1 / (1 + c |u|)^2` in one expression."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, phi: torch.Tensor, c: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shift, u = phi.unbind(2)
        denominator = u.abs().mul_(c).add_(1)
        log_scale = torch.div(u, denominator)
        scale = log_scale.exp()
        ctx.save_for_backward(x, scale, denominator)
        return torch.addcmul(shift, x, scale), log_scale.sum(1)

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor, grad_ladj: torch.Tensor) -> tuple:
        x, scale, denominator = ctx.saved_tensors
        grad_x = grad * scale
        grad_u = torch.addcmul(grad_ladj.unsqueeze(1), grad_x, x).div_(denominator.square_())
        if ctx.needs_input_grad[0]:
            grad_x = grad_x.sum_to_size(x.shape)  # an input (D, N) shared by all K
        else:
            grad_x = None
        return grad_x, torch.stack((grad, grad_u), 2), None


def _affine(x: torch.Tensor, phi: torch.Tensor, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    """zuko's :class:`~zuko.transforms.MonotonicAffineTransform` for all K: ``x`` (K, D, N) or (D, N), ``phi`` (K, D, 2, N)."""
    return _Affine.apply(x, phi, 1 / abs(math.log(slope)))


def _rqs(x: torch.Tensor, phi: torch.Tensor, bins: int, bound: float, slope: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""zuko's :class:`~zuko.transforms.MonotonicRQSTransform` for all K: ``x`` (K, D, N), ``phi`` (K, D, 3 bins - 1, N).

    Knot :math:`j` is :math:`B (2 c_j / c_{bins} - 1)` with :math:`c_j = \sum_{i<j} e^{w_i}`, zuko's
    softmax/pad/cumsum. Only the cumulative sums are computed for every bin; the bin of each input is found on
    them, and the two knots (normalised there), the totals and the two raw derivatives of that bin are read with
    two gathers, so that the rest of the spline acts on one value per input instead of one per bin.
    """
    log_slope = abs(math.log(slope))
    sizes, derivatives = phi.split((2 * bins, bins - 1), 2)
    sizes = _squash_exp(sizes, 2 / log_slope).unflatten(2, (2, bins))  # widths, heights: (K, D, 2, bins, N)
    cum = F.pad(torch.cumsum(sizes, 3), (0, 0, 1, 0))  # (K, D, 2, bins + 1, N), c_0 = 0
    x = x.expand(*phi.shape[:2], phi.shape[-1])
    with torch.no_grad():
        horizontal = cum[:, :, 0]
        threshold = (x + bound) * horizontal[:, :, -1] / (2 * bound)
        k = torch.sum(horizontal < threshold.unsqueeze(2), dim=2) - 1
    inside = torch.logical_and(0 <= k, k < bins)
    k = (k % bins).unsqueeze(2)
    # rows of the flattened (2, bins + 1) sums: c_k, c_k+1, c_bins of the widths, then of the heights
    step = torch.tensor([1, 1, 0, 1, 1, 0], device=k.device).unsqueeze(-1)
    offsets = torch.tensor([0, 1, bins, bins + 1, bins + 2, 2 * bins + 1], device=k.device).unsqueeze(-1)
    cx0, cx1, cx, cy0, cy1, cy = cum.flatten(2, 3).gather(2, k * step + offsets).unbind(2)
    x0, x1 = bound * (2 * cx0 / cx - 1), bound * (2 * cx1 / cx - 1)
    y0, y1 = bound * (2 * cy0 / cy - 1), bound * (2 * cy1 / cy - 1)
    ends = F.pad(derivatives, (0, 0, 1, 1), value=0.0).gather(2, k + offsets[:2])
    d0, d1 = _squash_exp(ends, 1 / log_slope).unbind(2)
    dx, dy = x1 - x0, y1 - y0
    s = dy / dx
    z = inside * (x - x0) / dx
    zz = z * (1 - z)
    denominator = s + (d0 + d1 - 2 * s) * zz
    y = y0 + dy * (s * z**2 + d0 * zz) / denominator
    jacobian = s**2 * (2 * s * zz + d0 * (1 - z) ** 2 + d1 * z**2) / denominator**2
    return torch.where(inside, y, x), (inside * jacobian.log()).sum(1)


def _batched_autoregressive(
    x: torch.Tensor, steps: Sequence[_Step], params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, ladj)`` of K stacked MAF/NSF flows at ``x`` (N, D): shapes (K, N, D) and (K, N)."""
    d = x.shape[-1]
    z, ladj = x.t(), x.new_zeros(())  # features first: (D, N), then (K, D, N)
    for step in steps:
        phi = _masked_mlp(z, step.layers, params, buffers).unflatten(1, (d, step.total))
        if step.univariate == "affine":
            z, step_ladj = _affine(z, phi, step.slope)
        else:
            z, step_ladj = _rqs(z, phi, step.bins, step.bound, step.slope)
        ladj = ladj + step_ladj
    return z.transpose(1, 2), ladj


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
        self._steps: tuple[_Step, ...] | None = None
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
            self._steps = _plan(template)
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
            if self._steps is not None:
                batch = x.shape[:-1]
                z, ladj = _batched_autoregressive(x.reshape(-1, self.dim), self._steps, params, buffers)
                return z.reshape(-1, *batch, self.dim), ladj.reshape(-1, *batch)
            call = lambda p, b: functional_call(self._template, (p, b), (x,))  # noqa: E731
            return vmap(call, in_dims=(0, None))(params, buffers)
        k, n = self.n_components, x.shape[0]
        context = torch.eye(k, device=x.device, dtype=x.dtype)[:, None, :].expand(k, n, k)
        return self.shared.flow.transform(context).call_and_ladj(x.expand(k, n, self.dim))

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """(K, N) log density of the per-component bases at ``z`` (K, N, D)."""
        loc, scale = self.base_loc[:, None, :], self.base_scale[:, None, :]
        standard = (z - loc) / scale
        constant = self.base_scale.log().sum(-1, keepdim=True) + 0.5 * self.dim * math.log(2 * math.pi)
        return (standard * standard).sum(-1).mul(-0.5).sub(constant)

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
