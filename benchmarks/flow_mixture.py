"""Mixtures of normalizing flows: 2-D toys, MNIST5 against k-means and a GMM, and the batched K-flow pass.

    python benchmarks/flow_mixture.py toys
    python benchmarks/flow_mixture.py ratio [--device cuda] [--n 1000] [--repeats 60] [--rounds 6] [--threads 1] [--out FILE]
    python benchmarks/flow_mixture.py mnist5 --data-dir ../shared/data/mnist [--device cuda] [--epochs 10]

Each part writes its own section of docs/benchmarks.md; ``ratio`` is one table of ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture as SkGMM

from mixzoo.analysis.metrics import clustering_report
from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_fit
from mixzoo.data import load_dataset
from mixzoo.nets.flows import ComponentFlows

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402

COLS = ["ACC", "NMI", "ARI", "seconds"]


def _row(name: str, r: dict) -> list:
    return [name, r["acc"], r["nmi"], r["ari"], r["seconds"]]


def toys(a: argparse.Namespace) -> None:
    rows = []
    runs = [
        ("pinwheel", "MLE (empty guide), NSF", dict(data="pinwheel")),
        ("pinwheel", "MLE (empty guide), MAF", dict(data="pinwheel", options={"flow": "maf"})),
        ("pinwheel", "variational (encoder guide), NSF", dict(data="pinwheel", guide="encoder")),
        ("two-circles", "MLE, unsupervised", dict(data="two-circles")),
        ("two-circles", "MLE, 32 labels", dict(data="two-circles", labels=32)),
        ("two-circles", "variational, unsupervised", dict(data="two-circles", guide="encoder")),
        ("two-circles", "variational, 32 labels", dict(data="two-circles", guide="encoder", labels=32)),
    ]
    for data, what, kw in runs:
        for seed in range(a.seeds):
            r = run_fit(FitConfig(model="flow-mixture", seed=seed, device=a.device, **kw), progress=False)
            rows.append([data, what, seed, r["acc"], r["nmi"], r["ari"], r["seconds"]])
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            "## Flow mixtures on 2-D toys",
            "",
            f"Command: `python benchmarks/flow_mixture.py toys --seeds {a.seeds}`  ",
            f"Machine: {machine()}  ",
            "Each row is `mixzoo fit --model flow-mixture --data D [--guide encoder] [--labels 32] [--flow maf] --seed S` "
            "with the defaults (3 NSF layers of 32x32 per component, independent parameters, base N(k-means centre, 0.1 I) "
            "on min-max scaled data, 250 epochs of Adam at 5e-3 decaying 0.99, batch 500; the encoder's temperature decays "
            "5 -> 1 by 0.98 per epoch). ACC is over all points (the 32 labelled ones are 1.6% of two-circles).",
            "",
            table(["data", "model", "seed", "ACC", "NMI", "ARI", "seconds"], rows),
        ]
    )
    write_section("flow-toys", body, a.out)
    print(body)


def _interleaved_ms(fns: dict[str, object], repeats: int, rounds: int, dev: torch.device) -> dict[str, float]:
    """The fastest of ``rounds`` rounds (the least disturbed by other processes, as ``timeit`` advises) of the mean
    ms of ``repeats // rounds`` forward + backward calls, the functions taking turns within each round."""
    per_round = max(1, repeats // rounds)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(3):
            fn().sum().backward()
    for _ in range(rounds):
        for name, fn in fns.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(per_round):
                fn().sum().backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            samples[name].append((time.perf_counter() - t) / per_round * 1000)
    return {name: float(min(v)) for name, v in samples.items()}


def ratio(a: argparse.Namespace) -> None:
    dev = torch.device(a.device)
    rows = []
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for kind, independent in (("maf", True), ("nsf", True), ("maf", False), ("realnvp", False)):
        flows = ComponentFlows(a.dim, 10, kind=kind, independent=independent, hidden=(64, 64)).to(dev)
        x = torch.randn(a.n, a.dim, device=dev)

        def batched(flows: ComponentFlows = flows, x: torch.Tensor = x) -> torch.Tensor:
            return flows.log_prob(x)

        def loop(flows: ComponentFlows = flows, x: torch.Tensor = x) -> torch.Tensor:
            return torch.stack([flows.component_log_prob(x, k) for k in range(10)], 1)

        diff = (batched() - loop()).abs().max().item()
        times = _interleaved_ms({"batched": batched, "loop": loop}, a.repeats, a.rounds, dev)
        rows.append(
            [
                kind,
                "independent (stacked MADE)" if independent else "shared (conditional)",
                f"{diff:.1e}",
                times["loop"],
                times["batched"],
                times["loop"] / times["batched"],
            ]
        )
        print(rows[-1], flush=True)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body = "\n".join(
        [
            f"## Batched K-flow pass against a loop over K (K = 10, {a.device})",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine(a.device)}  ",
            f"Load average (1 min) of the machine: {load:.1f} before, {load_after:.1f} after.  ",
            f"Forward + backward of the (N, K) log densities, N = {a.n}, D = {a.dim}, hidden 64x64, 3 layers; ms per call: "
            f"the fastest of {a.rounds} rounds of the mean of {max(1, a.repeats // a.rounds)} calls, loop and batched pass "
            "taking turns in each round. Loop: zuko's flow of each component in turn (`ComponentFlows.component_log_prob`); "
            "batched, independent: the K MADE networks as stacked (K, out, in) weights, one `baddbmm` per masked layer, "
            "and one affine or spline step for all K (`ComponentFlows.log_prob`); shared: one conditional zuko flow on "
            "the K·N inputs. Max abs diff: largest difference between the two (N, K) results.",
            "",
            table(["flow", "parameters", "max abs diff", "loop ms", "batched ms", "speed-up"], rows),
        ]
    )
    write_section(f"flow-ratio-{a.device}", body, a.out)
    print(body)


def mnist5(a: argparse.Namespace) -> None:
    rows = []
    for pca in (None, 50):
        d = load_dataset("mnist5", data_dir=a.data_dir, pca=pca, seed=0)
        t = time.perf_counter()
        km = KMeans(5, n_init=10, random_state=0).fit(d.x)
        proba = np.eye(5)[km.labels_]
        rows.append(
            [
                "k-means (sklearn, n_init 10)",
                pca or "raw",
                *[clustering_report(d.labels, proba)[k] for k in ("acc", "nmi", "ari")],
                time.perf_counter() - t,
            ]
        )
        print(rows[-1], flush=True)
        t = time.perf_counter()
        gm = SkGMM(5, covariance_type="diag", random_state=0, reg_covar=1e-3).fit(d.x)
        m = clustering_report(d.labels, gm.predict_proba(d.x))
        rows.append(["GMM diag (sklearn)", pca or "raw", m["acc"], m["nmi"], m["ari"], time.perf_counter() - t])
        print(rows[-1], flush=True)
        variants = (
            [("empty", "clusters")]
            if pca is None
            else [("empty", "clusters"), ("empty", "kmeans"), ("empty", "paper"), ("encoder", "clusters")]
        )
        for guide, base in variants:
            r = run_fit(
                FitConfig(
                    model="flow-mixture",
                    data="mnist5",
                    data_dir=a.data_dir,
                    pca=pca,
                    epochs=a.epochs,
                    seed=0,
                    device=a.device,
                    guide=guide,
                    options={"flow": "maf", "base": base, "hidden": "256,256" if pca is None else "128,128"},
                ),
                progress=False,
            )
            name = f"flow mixture, MAF, {'MLE' if guide == 'empty' else 'encoder q(y|x)'}, base {base}"
            rows.append([name, pca or "raw", r["acc"], r["nmi"], r["ari"], r["seconds"]])
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"## MNIST5 (digits 0-4, 35735 images): flow mixture against k-means and a GMM ({a.device})",
            "",
            f"Command: `python benchmarks/flow_mixture.py mnist5 --data-dir DIR --device {a.device} --epochs {a.epochs}`  ",
            f"Machine: {machine()}  ",
            "Flow mixture: `mixzoo fit --model flow-mixture --data mnist5 [--pca 50] [--guide encoder] --flow maf --base B "
            f"--hidden H --epochs {a.epochs}` (K = 5, 3 MAF layers per component, hidden 256x256 raw / 128x128 PCA, batch 500). "
            "Bases: `clusters` = N(k-means centre, the k-means cluster's diagonal variances), `kmeans` = N(k-means centre, 0.1 I), "
            "`paper` = the 003 paper's N(U(0,1)^D, 0.1 I). All methods see the same features; sklearn's GMM uses reg_covar 1e-3.",
            "",
            table(["method", "features", "ACC", "NMI", "ARI", "seconds"], rows),
        ]
    )
    write_section(f"flow-mnist5-{a.device}", body, a.out)
    print(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("toys", "ratio", "mnist5"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=6, help="ratio: rounds in which the loop and the batched pass take turns")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: at most 2)")
    ap.add_argument("--out", default=None, help="Markdown file to write the section into (default docs/benchmarks.md)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads or min(2, torch.get_num_threads()))
    {"toys": toys, "ratio": ratio, "mnist5": mnist5}[a.part](a)


if __name__ == "__main__":
    main()
