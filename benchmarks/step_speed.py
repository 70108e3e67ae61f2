"""One training step through Pyro (SVI with the family's loss) against a hand-written PyTorch step of the same loss,
for each model family, measured in one run; and the epoch time of ``mixzoo.fit``.

    python benchmarks/step_speed.py [--device cpu|cuda|auto] [--steps 100] [--rounds 5] [--quick | --tiny] [--out FILE]

Both steps use the same modules, minibatches and Adam settings; the PyTorch step computes the loss of the
Pyro step directly (the enumerated sum, the EM objective, the NCE objective, the VIMCO surrogate), and the
table checks that the two losses agree at the same parameters. Rounds are interleaved (Pyro, PyTorch, ...)
on fresh modules built from the same seed; after a warm-up round the fastest of ``--rounds`` is kept. Writes the
section ``step-speed-<device>`` of docs/benchmarks.md (or of ``--out``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import command, machine, table, write_section  # noqa: E402

import mixzoo  # noqa: E402
from mixzoo.data import load_dataset
from mixzoo.guides import ClusterEncoder, EmptyGuide, PosteriorGuide
from mixzoo.inference import EM, NCE, VIMCO, make_loss
from mixzoo.inference.noise import GaussianNoise
from mixzoo.inference.optimizer import JointOptim
from mixzoo.inference.vimco import vimco_objective
from mixzoo.models import GMVAE, EnergyMixture, FlowMixture, GaussianMixture, NeuralMixture
from mixzoo.models.gmvae import GMVAEGuide
from mixzoo.param_store import isolated_param_store

Loss = Callable[[Any, Any, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""``(model, guide, x, idx) -> (loss value, tensor to differentiate)`` of the hand-written step."""


@dataclass
class Family:
    name: str
    data: str
    scale: bool
    batch_size: int
    lr: float
    build: Callable[[torch.Tensor, int], tuple[Any, Any]]
    pyro_loss: Callable[[], Any]
    torch_loss: Loss
    stochastic: bool = False


def _scale(x: torch.Tensor, idx: torch.Tensor) -> float:
    return x.shape[0] / len(idx)


def enumerated_nll(model: Any, guide: Any, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``-N/B sum_n logsumexp_k log p(x_n, y=k)``: TraceEnum_ELBO with the empty guide (maximum likelihood)."""
    loss = -_scale(x, idx) * torch.logsumexp(model.log_joint(x[idx]), -1).sum()
    return loss, loss


def encoder_elbo(model: Any, guide: ClusterEncoder, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``-N/B sum_n sum_k q(k|x_n) [log p(x_n, k) - log q(k|x_n)]``: TraceEnum_ELBO with y enumerated in the guide."""
    xb = x[idx]
    log_q = F.log_softmax(guide.logits(xb) / guide.temperature, -1)
    loss = -_scale(x, idx) * (log_q.exp() * (model.log_joint(xb) - log_q)).sum()
    return loss, loss


def em_objective(model: NeuralMixture, guide: Any, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (6) of the neural mixture: responsibilities softmax(a* + log prior) held constant (the E-step)."""
    xb = x[idx]
    with torch.no_grad():
        r = F.softmax(model.scores(xb, batch_stats=True) + model.log_prior, -1)
    a_star = model.scores(xb, batch_stats=True, update=True)
    loss = -_scale(x, idx) * (r * (model.log_prior + F.logsigmoid(a_star / model.gamma))).sum()
    return loss, loss


def make_nce_objective(nu: float = 1.0) -> Loss:
    """The NCE loss with a Gaussian matched to the data as noise, M = nu N noise points."""
    state: dict[str, Any] = {}

    def objective(model: EnergyMixture, guide: Any, x: torch.Tensor, idx: torch.Tensor, noise_samples=None):
        if state.get("x") is not x:
            state["x"], state["noise"] = x, GaussianNoise()
            state["noise"].fit(x)
        noise = state["noise"]
        n, b = x.shape[0], len(idx)
        m = nu * n
        log_mn = lambda u: math.log(m) + noise.log_prob(u)  # noqa: E731
        log_np = lambda u: math.log(n) + torch.logsumexp(model.log_potentials(u), -1)  # noqa: E731
        xb = x[idx]
        total = (n / b) * F.logsigmoid(log_np(xb) - log_mn(xb)).sum()
        yb = noise.sample(max(1, round(m * b / n))) if noise_samples is None else noise_samples[0]
        total = total + (m / len(yb)) * (log_mn(yb) - torch.logaddexp(log_np(yb), log_mn(yb))).sum()
        return -total, -total

    return objective


def vimco_step(particles: int) -> Loss:
    """The VIMCO bound and surrogate of the GMVAE with q(y|x) q(z|x,y), particles vectorized."""

    def objective(model: GMVAE, guide: GMVAEGuide, x: torch.Tensor, idx: torch.Tensor):
        xb = x[idx]
        q_y = dist.Categorical(logits=guide.logits(xb))
        y = q_y.sample((particles,))  # (M, B)
        loc, scale = guide.z_params(xb, y)
        q_z = dist.Normal(loc, scale).to_event(1)
        z = q_z.rsample()
        log_p = (
            -math.log(model.n_clusters)
            + dist.Normal(model.mu_y[y], model.prior_scale()[y]).to_event(1).log_prob(z)
            + model.decode(z).log_prob(xb)
        )
        log_qy = q_y.log_prob(y)
        bound, surrogate = vimco_objective(log_p - log_qy - q_z.log_prob(z), log_qy)
        s = _scale(x, idx)
        return -s * bound.sum(), -s * surrogate.sum()

    return objective


def enum_y_elbo(model: GMVAE, guide: GMVAEGuide, x: torch.Tensor, idx: torch.Tensor):
    """EnumY: y summed out in the guide, one reparameterized z per (point, cluster)."""
    xb = x[idx]
    k = model.n_clusters
    log_qy = F.log_softmax(guide.logits(xb), -1).T  # (K, B)
    ys = torch.arange(k, device=x.device)[:, None].expand(k, len(idx))
    loc, scale = guide.z_params(xb, ys)
    q_z = dist.Normal(loc, scale).to_event(1)
    z = q_z.rsample()
    log_p = (
        -math.log(k)
        + dist.Normal(model.mu_y[ys], model.prior_scale()[ys]).to_event(1).log_prob(z)
        + model.decode(z).log_prob(xb)
    )
    loss = -_scale(x, idx) * (log_qy.exp() * (log_p - q_z.log_prob(z) - log_qy)).sum()
    return loss, loss


def _initialized(model: Any, guide: Any, x: torch.Tensor, seed: int) -> tuple[Any, Any]:
    for m in (model, guide):
        if hasattr(m, "initialize"):
            m.initialize(x, seed=seed)
    return model, guide


def _gmm(cov: str) -> Callable[[torch.Tensor, int], tuple[Any, Any]]:
    return lambda x, k: _initialized(GaussianMixture(x.shape[1], k, covariance=cov), EmptyGuide(), x, 0)


def _flow(guide: str) -> Callable[[torch.Tensor, int], tuple[Any, Any]]:
    def build(x: torch.Tensor, k: int) -> tuple[Any, Any]:
        model = FlowMixture(x.shape[1], k, kind="nsf", hidden=(32, 32))
        g = EmptyGuide() if guide == "empty" else ClusterEncoder(x.shape[1], k, temperature=5.0)
        return _initialized(model, g, x, 0)

    return build


def _neural(x: torch.Tensor, k: int) -> tuple[Any, Any]:
    model = NeuralMixture(x.shape[1], k)
    model.initialize(x, seed=0)
    return model, PosteriorGuide(model)


def _gmvae(x: torch.Tensor, k: int) -> tuple[Any, Any]:
    return GMVAE(x.shape[1], k), GMVAEGuide(x.shape[1], k)


FAMILIES = [
    Family("`gmm` diag, trace-enum", "digits", False, 2048, 0.1, _gmm("diag"), lambda: make_loss("trace-enum"), enumerated_nll),
    Family("`gmm` full, trace-enum", "digits", False, 2048, 0.01, _gmm("full"), lambda: make_loss("trace-enum"), enumerated_nll),
    Family("`flow-mixture` NSF, empty guide, trace-enum", "pinwheel", False, 500, 5e-3, _flow("empty"),
           lambda: make_loss("trace-enum"), enumerated_nll),
    Family("`flow-mixture` NSF, encoder guide, trace-enum", "pinwheel", False, 500, 5e-3, _flow("encoder"),
           lambda: make_loss("trace-enum"), encoder_elbo),
    Family("`energy-mixture` quadratic, nce", "pinwheel", False, 1024, 0.01,
           lambda x, k: _initialized(EnergyMixture(x.shape[1], k, features="quadratic"), EmptyGuide(), x, 0),
           lambda: NCE(), make_nce_objective(), stochastic=True),
    Family("`neural-mixture` MLP 32-32, em", "digits", False, 128, 1e-3, _neural, lambda: EM(), em_objective),
    Family("`gmvae` q(z\\|x,y), vimco (5 particles)", "digits", True, 128, 1e-3, _gmvae, lambda: VIMCO(5),
           vimco_step(5), stochastic=True),
    Family("`gmvae` q(z\\|x,y), trace-enum (EnumY)", "digits", True, 128, 1e-3, _gmvae,
           lambda: make_loss("trace-enum"), enum_y_elbo, stochastic=True),
]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _params(model: Any, guide: Any) -> list[torch.nn.Parameter]:
    seen: dict[int, torch.nn.Parameter] = {}
    for m in (model, guide):
        if isinstance(m, torch.nn.Module):
            for p in m.parameters():
                if p.requires_grad:
                    seen[id(p)] = p
    return list(seen.values())


def loss_check(fam: Family, x: torch.Tensor, k: int, idx: torch.Tensor, draws: int) -> float:
    """Relative difference of the Pyro loss and the hand-written one at the same parameters (means of
    ``draws`` evaluations for stochastic losses)."""
    torch.manual_seed(0)
    model, guide = fam.build(x, k)
    model.to(x.device)
    guide.to(x.device)
    loss = fam.pyro_loss()
    n = draws if fam.stochastic else 1
    kw: dict[str, Any] = {}
    if isinstance(loss, NCE):  # the same noise draws for both
        loss.sources[0][0].fit(x)
        kw["noise_samples"] = [loss.sources[0][0].sample(len(idx))]
        n = 1
    with isolated_param_store():
        if isinstance(loss, EM):  # EM.loss evaluates without autograd, i.e. with the running statistics
            pyro_v = sum(float(loss.differentiable_loss(model, guide, x, None, idx)) for _ in range(n)) / n
        else:
            pyro_v = sum(float(loss.loss(model, guide, x, None, idx, **kw)) for _ in range(n)) / n
    if isinstance(loss, NCE):
        torch_v = float(fam.torch_loss(model, guide, x, idx, **kw)[0])
    else:
        torch_v = sum(float(fam.torch_loss(model, guide, x, idx)[0]) for _ in range(n)) / n
    return abs(pyro_v - torch_v) / max(abs(torch_v), 1e-12)


def time_steps(fam: Family, x: torch.Tensor, k: int, batches: list[torch.Tensor], kind: str) -> float:
    """Mean ms per step over ``batches`` after three warm-up steps, on fresh modules built under seed 0."""
    dev = x.device
    torch.manual_seed(0)
    model, guide = fam.build(x, k)
    model.to(dev)
    guide.to(dev)
    if kind in ("pyro", "pyro-per-param"):
        # "pyro": the optimizer of mixzoo.fit (one Adam over all parameters); "pyro-per-param": pyro.optim.Adam,
        # one torch Adam per parameter tensor, stepped one by one
        optim = JointOptim(torch.optim.Adam, {"lr": fam.lr}) if kind == "pyro" else pyro.optim.Adam({"lr": fam.lr})
        with isolated_param_store():
            svi = SVI(model, guide, optim, fam.pyro_loss())
            for idx in batches[:3]:
                svi.step(x, None, idx)
            _sync(dev)
            t = time.perf_counter()
            for idx in batches:
                svi.step(x, None, idx)
            _sync(dev)
            return (time.perf_counter() - t) / len(batches) * 1000
    opt = torch.optim.Adam(_params(model, guide), lr=fam.lr)

    def step(idx: torch.Tensor) -> float:
        opt.zero_grad()
        value, surrogate = fam.torch_loss(model, guide, x, idx)
        surrogate.backward()
        opt.step()
        return float(value)  # like SVI.step, which returns a float

    for idx in batches[:3]:
        step(idx)
    _sync(dev)
    t = time.perf_counter()
    for idx in batches:
        step(idx)
    _sync(dev)
    return (time.perf_counter() - t) / len(batches) * 1000


def epoch_seconds(fam: Family, x: torch.Tensor, k: int, epochs: int) -> float:
    """Median seconds per epoch of ``mixzoo.fit`` (epochs after the first)."""
    torch.manual_seed(0)
    model, guide = fam.build(x, k)
    stamps: list[float] = []

    def callback(epoch: int, result: Any) -> None:
        _sync(x.device)
        stamps.append(time.perf_counter())

    mixzoo.fit(model, guide, x, loss=fam.pyro_loss(), epochs=epochs, batch_size=fam.batch_size, lr=fam.lr, seed=0,
               device=x.device, progress=False, callback=callback)
    gaps = sorted(b - a for a, b in zip(stamps[:-1], stamps[1:], strict=True))
    return gaps[len(gaps) // 2]


def _load() -> float:
    """The 1-minute load average (NaN where the system does not report one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per round (default 100; 20 quick, 5 tiny)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--tiny", action="store_true")
    ap.add_argument("--only", default=None, help="run the families whose name contains this text")
    ap.add_argument("--out", default=None, help="Markdown file to write the section into (default docs/benchmarks.md)")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per family (the fastest kept; 5 by default)")
    ap.add_argument("--threads", type=int, default=1, help="torch (and BLAS/OpenMP) threads; 1 by default, see run.py")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    dev = torch.device(device)
    steps = a.steps or (5 if a.tiny else 20 if a.quick else 100)
    fit_epochs = 2 if a.tiny else 3 if a.quick else 5
    draws = 5 if a.tiny else 20 if a.quick else 50
    rows = []
    load_start = _load()
    families = [f for f in FAMILIES if a.only is None or a.only in f.name]
    for fam in families:
        d = load_dataset(fam.data, scale=fam.scale)
        x = torch.as_tensor(d.x, device=dev)
        k = d.n_classes
        g = torch.Generator().manual_seed(0)
        bs = min(fam.batch_size, len(x))
        batches = [torch.randperm(len(x), generator=g)[:bs].to(dev) for _ in range(steps)]
        check = loss_check(fam, x, k, batches[0], draws=draws)
        kinds = ("pyro", "pyro-per-param", "torch")
        rounds: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(a.rounds + 1):  # the first round warms up and is dropped
            for kind in kinds:
                rounds[kind].append(time_steps(fam, x, k, batches, kind))
        times = {kind: min(r[1:]) for kind, r in rounds.items()}  # the least disturbed round, as timeit advises
        per_epoch = epoch_seconds(fam, x, k, fit_epochs)
        rows.append(
            [
                fam.name,
                f"{fam.data}{' (standardised)' if fam.scale else ''}, N = {len(x)}",
                bs,
                f"{check:.1e}" + (" (means)" if fam.stochastic and "nce" not in fam.name else ""),
                times["pyro"],
                times["pyro-per-param"],
                times["torch"],
                times["pyro"] / times["torch"],
                times["pyro-per-param"] / times["torch"],
                math.ceil(len(x) / bs),
                per_epoch,
            ]
        )
        print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"## Training step: Pyro SVI against a hand-written PyTorch step of the same loss ({device})",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine(device)}  ",
            f"Load average (1 min) at the start and end of the run: {load_start:.2f}, {_load():.2f} "
            f"on {os.cpu_count()} cores; other processes slow both steps of a round alike only on average, so "
            "a ratio under load is noisier than one on an idle machine.  ",
            f"Per family: ms per step, mean over {steps} minibatches after 3 warm-up steps, in rounds interleaved (Pyro, "
            f"Pyro per-param, PyTorch) on fresh modules built under seed 0; a first round warms up, and each column is "
            f"the fastest of the {a.rounds} rounds after it (the least disturbed by other processes, as `timeit` advises); "
            "all use Adam with the family's default learning rate. `Pyro` is `SVI.step` with the optimizer of "
            "`mixzoo.fit` (`mixzoo.inference.optimizer.JointOptim`: one torch Adam over all parameters, one `step()`); "
            "`Pyro per-param` is `SVI.step` with `pyro.optim.Adam` (one torch Adam per parameter tensor, each "
            "stepped in turn); their updates are equal. Each Pyro step uses the loss the command line builds: "
            "`trace-enum` is `mixzoo.inference.TableEnum_ELBO`, and it, `nce` and `em` score a model that states "
            "its table (`log_joint`) from it without tracing (`mixzoo.inference.untraced`), after one traced "
            "check of the pair in the warm-up. The PyTorch step computes the loss of the Pyro step by hand "
            "(enumerated sum over clusters, EM objective, NCE objective with the same Gaussian noise, VIMCO surrogate, "
            "EnumY ELBO). `loss check`: |Pyro - PyTorch| / |PyTorch| at the same parameters and minibatch (for "
            f"stochastic losses the means of {draws} evaluations, for NCE with the same noise draws). `ratio` = Pyro / "
            f"PyTorch, `ratio per-param` = Pyro per-param / PyTorch. `fit s/epoch`: median seconds per epoch of `mixzoo.fit` over {fit_epochs} epochs (the training "
            "loop's per-epoch checks included).",
            "",
            table(
                ["family", "data", "batch", "loss check", "Pyro ms/step", "Pyro per-param Adam ms/step", "PyTorch ms/step",
                 "ratio", "ratio per-param", "steps/epoch", "fit s/epoch"],
                rows,
            ),
        ]
    )
    path = write_section(f"step-speed-{device}", body, a.out)
    print(body)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
