"""How close training runs to the hardware: achieved matmul FLOP rate of a training step against the machine's
measured dense matmul rate, both in float32.

    python benchmarks/flops.py [--device cpu|cuda|auto] [--batch-size 512] [--quick | --tiny] [--out FILE]

Peak: the best rate of square float32 matmuls (n = 512, 1024, 2048) on the device. Each model's training
FLOPs per step are counted analytically from its linear layers (2 x rows x in x out per layer forward,
x3 for forward and backward, plus any pass without gradient) and cross-checked with
``torch.utils.flop_counter.FlopCounterMode``, which counts the matmuls actually run. Elementwise work
(activations, log densities, the optimizer) is not counted, so the fraction is a lower bound on how busy
the arithmetic units are. MNIST-shaped inputs (784 features in [0, 1], random: the rate does not depend on
the values). Writes the section ``flops-<device>`` of docs/benchmarks.md (or of ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, TraceEnum_ELBO
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import command, machine, table, write_section  # noqa: E402
from step_speed import em_objective, vimco_step  # noqa: E402

from mixzoo.guides import PosteriorGuide
from mixzoo.inference import EM, VIMCO
from mixzoo.models import GMVAE, NeuralMixture
from mixzoo.models.gmvae import GMVAEGuide
from mixzoo.nets.mlp import mlp
from mixzoo.param_store import isolated_param_store

D, K, H, L, M = 784, 10, 256, 10, 5
"""MNIST-shaped data, 10 clusters, hidden 256x256, latent 10, 5 VIMCO particles."""


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak(dev: torch.device, sizes: tuple[int, ...], repeats: int) -> tuple[float, int]:
    """Best float32 GFLOP/s of square matmuls on ``dev`` and the size that reached it."""
    best = (0.0, 0)
    for n in sizes:
        a = torch.randn(n, n, device=dev)
        b = torch.randn(n, n, device=dev)
        for _ in range(2):
            a @ b
        _sync(dev)
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(dev)
        rate = 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9
        best = max(best, (rate, n))
    return best


def mlp_flops(rows: int, sizes: list[int]) -> int:
    """Forward matmul FLOPs of an MLP of these layer sizes on ``rows`` inputs."""
    return sum(2 * rows * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def gmvae_vimco_flops(b: int) -> int:
    fwd = mlp_flops(b, [D, H, H, K]) + mlp_flops(M * b, [D + K, H, H, 2 * L]) + mlp_flops(M * b, [L, H, H, 2 * D])
    return 3 * fwd


def gmvae_enum_flops(b: int) -> int:
    fwd = mlp_flops(b, [D, H, H, K]) + mlp_flops(K * b, [D + K, H, H, 2 * L]) + mlp_flops(K * b, [L, H, H, 2 * D])
    return 3 * fwd


def neural_em_flops(b: int) -> int:
    return 4 * mlp_flops(b, [D, H, H, K])  # the E-step's pass without gradient, then forward and backward


def mlp_ref_flops(b: int) -> int:
    return 3 * mlp_flops(b, [D, H, H, K])


def _pyro_step(model: Any, guide: Any, loss: Any, lr: float) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    svi = SVI(model, guide, pyro.optim.Adam({"lr": lr}), loss)
    return lambda x, idx: svi.step(x, None, idx)


def _torch_step(model: Any, guide: Any, objective: Any, lr: float) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    params = list({id(p): p for m in (model, guide) for p in m.parameters()}.values())
    opt = torch.optim.Adam(params, lr=lr)

    def step(x: torch.Tensor, idx: torch.Tensor) -> float:
        opt.zero_grad()
        value, surrogate = objective(model, guide, x, idx)
        surrogate.backward()
        opt.step()
        return float(value)

    return step


def _gmvae(dev: torch.device) -> tuple[GMVAE, GMVAEGuide]:
    torch.manual_seed(0)
    return GMVAE(D, K, latent=L, hidden=(H, H)).to(dev), GMVAEGuide(D, K, latent=L, hidden=(H, H)).to(dev)


def _neural(x: torch.Tensor) -> tuple[NeuralMixture, PosteriorGuide]:
    torch.manual_seed(0)
    model = NeuralMixture(D, K, hidden=(H, H)).to(x.device)
    model.initialize(x, seed=0)
    return model, PosteriorGuide(model)


class _MLPRef(torch.nn.Module):
    """The classifier-shaped MLP D-H-H-K with a cross-entropy loss: what plain PyTorch reaches at this size."""

    def __init__(self) -> None:
        super().__init__()
        self.net = mlp([D, H, H, K])


def _mlp_ref_objective(model: _MLPRef, guide: Any, x: torch.Tensor, idx: torch.Tensor):
    loss = F.cross_entropy(model.net(x[idx]), idx % K)
    return loss, loss


def cases(x: torch.Tensor) -> list[tuple[str, Callable[[], Callable], Callable[[int], int]]]:
    """(name, make a step function, analytic training FLOPs for a batch)."""
    dev = x.device

    def gmvae_pyro(loss: Any) -> Callable[[], Callable]:
        def make() -> Callable:
            model, guide = _gmvae(dev)
            return _pyro_step(model, guide, loss, 1e-3)

        return make

    def gmvae_torch() -> Callable:
        model, guide = _gmvae(dev)
        return _torch_step(model, guide, vimco_step(M), 1e-3)

    def neural_pyro() -> Callable:
        model, guide = _neural(x)
        return _pyro_step(model, guide, EM(), 1e-3)

    def neural_torch() -> Callable:
        model, guide = _neural(x)
        return _torch_step(model, guide, em_objective, 1e-3)

    def mlp_ref() -> Callable:
        torch.manual_seed(0)
        model = _MLPRef().to(dev)
        return _torch_step(model, torch.nn.Module(), _mlp_ref_objective, 1e-3)

    return [
        (f"`gmvae` VIMCO ({M} particles), Pyro SVI", gmvae_pyro(VIMCO(M)), gmvae_vimco_flops),
        (f"`gmvae` VIMCO ({M} particles), plain PyTorch", gmvae_torch, gmvae_vimco_flops),
        ("`gmvae` EnumY (trace-enum), Pyro SVI", gmvae_pyro(TraceEnum_ELBO(max_plate_nesting=1)), gmvae_enum_flops),
        (f"`neural-mixture` MLP {H}-{H}, EM, Pyro SVI", neural_pyro, neural_em_flops),
        (f"`neural-mixture` MLP {H}-{H}, EM, plain PyTorch", neural_torch, neural_em_flops),
        (f"reference: MLP {D}-{H}-{H}-{K} classifier, cross-entropy, plain PyTorch", mlp_ref, mlp_ref_flops),
    ]


def measure(make: Callable[[], Callable], x: torch.Tensor, batches: list[torch.Tensor]) -> tuple[float, int]:
    """(seconds per step, matmul FLOPs per step counted by FlopCounterMode) after three warm-up steps."""
    dev = x.device
    with isolated_param_store():
        step = make()
        for idx in batches[:3]:
            step(x, idx)
        counter = FlopCounterMode(display=False)
        with counter:
            step(x, batches[0])
        counted = counter.get_total_flops()
        _sync(dev)
        t = time.perf_counter()
        for idx in batches:
            step(x, idx)
        _sync(dev)
        return (time.perf_counter() - t) / len(batches), counted


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30; 10 quick, 3 tiny)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=None, help="Markdown file to write the section into (default docs/benchmarks.md)")
    ap.add_argument("--threads", type=int, default=1, help="torch (and BLAS/OpenMP) threads; 1 by default, see run.py")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    dev = torch.device(device)
    steps = a.steps or (3 if a.tiny else 10 if a.quick else 30)
    bs = 64 if a.tiny else a.batch_size
    sizes = (256, 512) if a.tiny else (512, 1024, 2048)
    peak, peak_n = matmul_peak(dev, sizes, repeats=3 if a.tiny else 10)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4096, D, generator=g).to(dev)
    batches = [torch.randperm(len(x), generator=g)[:bs].to(dev) for _ in range(steps)]
    rows = []
    for name, make, flops in cases(x):
        seconds, counted = measure(make, x, batches)
        analytic = flops(bs)
        rate = analytic / seconds / 1e9
        rows.append([name, bs, analytic / 1e9, counted / 1e9, seconds * 1000, rate, rate / peak])
        print(rows[-1], flush=True)
    peak_after, _ = matmul_peak(dev, (peak_n,), repeats=3 if a.tiny else 10)  # did the machine change meanwhile?
    tf32 = f"; TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}" if dev.type == "cuda" else ""
    body = "\n".join(
        [
            f"## Achieved training FLOP rate against the measured matmul rate (float32, {device})",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine(device)}  ",
            f"Measured dense float32 matmul rate: **{peak:.1f} GFLOP/s** (best of square n = "
            f"{', '.join(map(str, sizes))}, reached at n = {peak_n}; {peak_after:.1f} GFLOP/s when measured again after "
            f"the models{tf32}).  ",
            f"Models on MNIST-shaped inputs (784 features), K = {K}, hidden {H}x{H}, latent {L}, batch {bs}; "
            f"seconds per training step (Adam included), mean over {steps} steps after 3 warm-up steps. `GFLOP/step "
            "(analytic)`: matmul FLOPs of the linear layers, 2 x rows x in x out forward, x3 for forward and backward, "
            "plus the E-step's pass without gradient for EM; `(counted)`: the matmul FLOPs that "
            "`torch.utils.flop_counter.FlopCounterMode` saw in one step (less where no input gradient is needed for the "
            "first layer). Achieved rate = analytic FLOPs / time; `of peak` = achieved / measured matmul rate. "
            "Elementwise work is not counted.",
            "",
            table(
                ["step", "batch", "GFLOP/step (analytic)", "GFLOP/step (counted)", "ms/step", "achieved GFLOP/s",
                 "of peak"],
                rows,
            ),
        ]
    )
    path = write_section(f"flops-{device}", body, a.out)
    print(body)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
