"""Gaussian-mixture VAE under long std annealing: ACC and clusters in use as the floors shrink.

    python benchmarks/gmvae_annealing.py [--data digits] [--epochs 80] [--seeds 3]
    python benchmarks/gmvae_annealing.py --dequantize --losses vimco --seeds 1 --epochs 1400 \
        --anneal-every 100 --lr-halve-every 300 --particles 15   # the 004 paper's schedule

Trains the registry's GMVAE (q(z|x,y), raw pixels) with VIMCO and with EnumY for ``--epochs``
epochs, halving the std floors every ``--anneal-every`` epochs (10) from ``--anneal-start`` (1),
and records at every halving the ACC of argmax q(y|x), the number of clusters that hold a
point, and the floor. Writes the section gmvae-annealing-<data>[-dequantized][-<schedule>] of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import torch

import mixzoo
from mixzoo.analysis.metrics import clustering_report
from mixzoo.analysis.posterior import cluster_proba
from mixzoo.inference import make_loss
from mixzoo.models import get_family
from mixzoo.models.family import DataShape, Inference
from mixzoo.training.loop import fit

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402


def trajectory(
    x: torch.Tensor, labels: np.ndarray, loss: str, seed: int, epochs: int, every: int, a: argparse.Namespace
) -> tuple[list, float]:
    """ACC, clusters used and floor after each ``every`` epochs (the first entry: after the initialisation)."""
    spec = get_family("gmvae")
    options = spec.make_options(anneal_every=every, anneal_start=a.anneal_start, pretrain=a.pretrain)
    plan = spec.plan(options, DataShape(*x.shape), Inference("qzxy", loss, given=frozenset(options.to_dict())))
    recipe = plan.training
    k = int(labels.max()) + 1
    t = time.perf_counter()
    torch.manual_seed(seed)
    model, guide = spec.build_pair(x.shape[1], k, "qzxy", options)
    plan.start(model, guide, x, seed, None)
    points: list[tuple[int, float, int, float]] = []

    def record(epoch: int) -> None:
        p = cluster_proba(model, guide, x).detach().cpu().numpy()
        used = int((np.bincount(p.argmax(1), minlength=k) > 0).sum())
        points.append((epoch, clustering_report(labels, p)["acc"], used, float(model.eps_x)))

    schedules = plan.schedules(model, guide)
    for schedule in schedules:
        schedule(0)
    record(0)
    particles = {"particles": a.particles} if a.particles is not None else {}
    lr_decay = 0.5 ** (1 / a.lr_halve_every) if a.lr_halve_every is not None else None
    fit(model, guide, x, loss=make_loss(loss, **particles), epochs=epochs, batch_size=recipe.batch_size, lr=recipe.lr,
        lr_decay=lr_decay, seed=seed, schedules=schedules, progress=False,
        callback=lambda e, r: record(e + 1) if (e + 1) % every == 0 else None)
    return points, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subsample", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--dequantize", action="store_true", help="(level + U[0, 1)) / levels, the paper's preprocessing")
    ap.add_argument("--losses", nargs="+", default=["vimco", "trace-enum"], choices=["vimco", "trace-enum"])
    ap.add_argument("--anneal-every", type=int, default=None, help="halve the std floors every N epochs (registry: 10)")
    ap.add_argument("--anneal-start", type=float, default=1.0, help="the floors' first value (the paper: 1)")
    ap.add_argument("--particles", type=int, default=None, help="VIMCO particles (default 5; the paper: 15)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--pretrain", type=int, default=20, help="autoencoder pretraining epochs (registry: 20)")
    ap.add_argument("--lr-halve-every", type=int, default=None, help="halve the learning rate every N epochs (the paper: 300)")
    a = ap.parse_args()
    for flag in ("anneal_every", "particles", "lr_halve_every", "threads", "epochs", "seeds"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    if a.pretrain < 0:
        ap.error(f"--pretrain must be at least 0, got {a.pretrain}")
    try:  # bad option values and too few VIMCO particles fail here, before any data are read
        get_family("gmvae").make_options(anneal_start=a.anneal_start)
        for loss in a.losses:
            make_loss(loss, **({"particles": a.particles} if a.particles is not None else {}))
    except ValueError as err:
        ap.error(str(err))
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    d = mixzoo.load_dataset(a.data, data_dir=a.data_dir, subsample=a.subsample, seed=0, dequantize=a.dequantize)
    what = f"{a.data}, a seeded subsample of {a.subsample} images" if a.subsample else a.data
    x = torch.as_tensor(d.x)
    every = a.anneal_every if a.anneal_every is not None else get_family("gmvae").make_options().anneal_every
    rows, best = [], []
    names = {"vimco": "VIMCO", "trace-enum": "EnumY"}
    for loss in a.losses:
        name = names[loss]
        for seed in range(a.seeds):
            points, seconds = trajectory(x, d.labels, loss, seed, a.epochs, every, a)
            accs = [p[1] for p in points]
            i = int(np.argmax(accs))
            best.append([name, seed, points[i][0], accs[i], points[i][3], accs[-1], points[-1][2], seconds])
            rows.append([name, seed, *(f"{p[1]:.3f} ({p[2]})" for p in points)])
            print(rows[-1], flush=True)
    schedule_flags = "".join(
        f" --{flag} {value:g}" if isinstance(value, float) else f" --{flag} {value}"
        for flag, value in (("anneal-every", a.anneal_every), ("anneal-start", a.anneal_start if a.anneal_start != 1.0 else None),
                            ("particles", a.particles), ("lr-halve-every", a.lr_halve_every),
                            ("pretrain", a.pretrain if a.pretrain != 20 else None),
                            ("threads", a.threads if a.threads != 1 else None))
        if value is not None
    )
    losses = "" if a.losses == ["vimco", "trace-enum"] else "-losses-" + "-".join(a.losses)
    floors = [f"{p[3]:g}" for p in points]
    header = ["loss", "seed", *(f"epoch {p[0]} (floor {f})" for p, f in zip(points, floors, strict=True))]
    body = "\n".join(
        [
            f"## Gaussian-mixture VAE under long std annealing ({what}{', dequantized' if a.dequantize else ''}"
            f"{', schedule' + schedule_flags if schedule_flags else ''}{', ' + ' and '.join(names[x] for x in a.losses) + ' only' if losses else ''}, cpu)",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine()}  ",
            f"The registry's GMVAE (q(z|x,y), latent 10, MLP 256x256, {a.pretrain} epochs of autoencoder pretraining + GMM on the "
            f"codes, batch 128, Adam 1e-3"
            f"{f' times 0.5 ** (1/{a.lr_halve_every}) per epoch (halved every {a.lr_halve_every} epochs)' if a.lr_halve_every else ''}, "
            f"{f'{a.particles} particles per step' if a.particles is not None else '5 VIMCO particles (EnumY: 1 sample)'}, "
            f"{'pixels dequantized to (level + U[0, 1)) / levels' if a.dequantize else 'raw pixels'}) trained {a.epochs} epochs; the floors eps_x, eps_z of the stds start at "
            f"{a.anneal_start:g} and halve every {every} epochs (down to 1e-4). Each cell: ACC of argmax q(y|x) (clusters that hold at least one point). "
            "Epoch 0 is the start (autoencoder + GMM on its codes, q(y|x) taught its responsibilities).",
            "",
            table(header, rows),
            "",
            table(["loss", "seed", "best epoch", "best ACC", "floor there", f"ACC at epoch {a.epochs}",
                   f"clusters used at epoch {a.epochs}", "seconds"], best),
        ]
    )
    key = f"gmvae-annealing-{a.data}{f'-{a.subsample}' if a.subsample else ''}{'-dequantized' if a.dequantize else ''}"
    write_section(key + losses + schedule_flags.replace(" --", "-").replace(" ", ""), body)
    print(body)


if __name__ == "__main__":
    main()
