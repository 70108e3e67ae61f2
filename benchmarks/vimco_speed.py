"""One VIMCO training step of the GMVAE pair through Pyro's SVI against the same step written in plain PyTorch.

    python benchmarks/vimco_speed.py [--batch-size 128] [--particles 5] [--steps 200] [--device cpu]

Both use the same networks, particles and estimator (mixzoo.inference.vimco.vimco_objective);
writes the section vimco-speed-<device> of docs/benchmarks.md with the time ratio.
"""

from __future__ import annotations

import argparse
import sys
import time

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI

from mixzoo.data import load_dataset
from mixzoo.inference import VIMCO
from mixzoo.inference.vimco import vimco_objective
from mixzoo.models import GMVAE
from mixzoo.models.gmvae import GMVAEGuide

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import machine, table, write_section  # noqa: E402


def torch_step(model: GMVAE, guide: GMVAEGuide, opt: torch.optim.Optimizer, x: torch.Tensor, idx: torch.Tensor, m: int) -> float:
    xb = x[idx]
    q_y = dist.Categorical(logits=guide.logits(xb))
    y = q_y.sample((m,))  # (M, B)
    loc, scale = guide.z_params(xb, y)
    q_z = dist.Normal(loc, scale).to_event(1)
    z = q_z.rsample()
    log_p = (
        -torch.log(torch.tensor(float(model.n_clusters), device=x.device))
        + dist.Normal(model.mu_y[y], model.prior_scale()[y]).to_event(1).log_prob(z)
        + model.decode(z).log_prob(xb)
    )
    log_qy = q_y.log_prob(y)
    log_w = log_p - log_qy - q_z.log_prob(z)
    bound, surrogate = vimco_objective(log_w, log_qy)
    scale_n = x.shape[0] / len(idx)
    opt.zero_grad()
    (-scale_n * surrogate.sum()).backward()
    opt.step()
    return float(-scale_n * bound.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--particles", type=int, default=5)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    x = torch.as_tensor(load_dataset("digits", scale=True).x, device=dev)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randperm(len(x), generator=g)[: a.batch_size].to(dev) for _ in range(a.steps)]
    times = {}
    for name in ("pyro", "torch", "pyro", "torch"):  # interleaved twice, the second round is kept
        torch.manual_seed(0)
        model, guide = GMVAE(64, 10).to(dev), GMVAEGuide(64, 10).to(dev)
        if name == "pyro":
            with pyro.get_param_store().scope():
                svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), VIMCO(a.particles))
                svi.step(x, None, batches[0])
                t = time.perf_counter()
                for idx in batches:
                    svi.step(x, None, idx)
        else:
            opt = torch.optim.Adam(list(model.parameters()) + list(guide.parameters()), lr=1e-3)
            torch_step(model, guide, opt, x, batches[0], a.particles)
            t = time.perf_counter()
            for idx in batches:
                torch_step(model, guide, opt, x, idx, a.particles)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - t) / a.steps * 1000
    ratio = times["pyro"] / times["torch"]
    body = "\n".join(
        [
            f"## VIMCO step: Pyro SVI pair against plain PyTorch ({a.device})",
            "",
            f"Command: `python benchmarks/vimco_speed.py --batch-size {a.batch_size} --particles {a.particles} --steps {a.steps} --device {a.device}`  ",
            f"Machine: {machine()}  ",
            f"GMVAE (latent 10, MLP 256x256) with q(z|x,y) on digits, batch {a.batch_size}, {a.particles} particles, Adam; "
            f"mean over {a.steps} steps after one warm-up step, second of two interleaved rounds.",
            "",
            table(["Pyro SVI + VIMCO (ms/step)", "plain PyTorch (ms/step)", "ratio"], [[times["pyro"], times["torch"], ratio]]),
        ]
    )
    write_section(f"vimco-speed-{a.device}", body)
    print(body)


if __name__ == "__main__":
    main()
