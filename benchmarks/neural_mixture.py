"""Neural mixture (001) benchmarks; each writes a ``neural-*`` section of docs/benchmarks.md.

    python benchmarks/neural_mixture.py toys
    python benchmarks/neural_mixture.py digits
    python benchmarks/neural_mixture.py mnist --data-dir ../shared/data/mnist --subsample 10000 --epochs 5

``toys``: 2-D toys with and without score normalization (collapse, Table 1's batch
means). ``digits``: MLP and CNN, EM on eq. (6) against eq. (7) and the two-fold
optimisation. ``mnist``: the CNN with EM on eq. (7) against the two-fold
optimisation (Algorithm 1), the paper's Table 3 comparison.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, table, write_section  # noqa: E402

import mixzoo  # noqa: E402
from mixzoo.analysis.metrics import clustering_report
from mixzoo.data import load_dataset
from mixzoo.guides import PosteriorGuide
from mixzoo.inference import EM, two_fold
from mixzoo.models import NeuralMixture


def _evaluate(model: NeuralMixture, guide: PosteriorGuide, x: torch.Tensor, labels) -> dict:
    proba = mixzoo.cluster_proba(model, guide, x)
    report = clustering_report(labels, proba.numpy())
    report["used"] = int(len(proba.argmax(1).unique()))
    with torch.no_grad():  # Table 1: batch mean of sigmoid(a*/gamma) over one batch of 128, as in training
        h = torch.sigmoid(model.scores(x[:128], batch_stats=True) / model.gamma).mean(0)
    report["h_min"], report["h_max"] = float(h.min()), float(h.max())
    return report


def _em(x, labels, k, *, epochs, lr, seed, **model_kw) -> tuple[dict, float]:
    model = NeuralMixture(x.shape[1], k, **model_kw)
    guide = PosteriorGuide(model)
    model.initialize(x, seed=seed)
    result = mixzoo.fit(model, guide, x, loss=EM(), epochs=epochs, batch_size=128, lr=lr, seed=seed, progress=False)
    return _evaluate(model, guide, x, labels), result.seconds


def toys(args: argparse.Namespace, command: str) -> None:
    rows = []
    for name in ("pinwheel", "two-circles", "moons"):
        d = load_dataset(name)
        x = torch.tensor(d.x)
        for normalize in (True, False):
            for seed in range(args.seeds):
                r, sec = _em(
                    x, d.labels, d.n_classes, epochs=args.epochs or 20, lr=1e-3, seed=seed, normalize=normalize
                )
                rows.append(
                    [
                        name,
                        "yes" if normalize else "no",
                        seed,
                        r["acc"],
                        r["nmi"],
                        r["used"],
                        r["h_min"],
                        r["h_max"],
                        sec,
                    ]
                )
    body = (
        "## Neural mixture (001): 2-D toys, with and without score normalization\n\n"
        f"`{command}` - MLP 32-32, batch 128, gamma 5, Adam 1e-3, {args.epochs or 20} epochs, EM loss (eq. 6). "
        "`used`: clusters that receive at least one point; `h min/max`: smallest and largest batch mean of "
        "sigmoid(a*/gamma) over the K clusters on one batch of 128 (the paper's Table 1: about 0.5 with normalization).\n\n"
        + table(["data", "normalized", "seed", "ACC", "NMI", "used", "h min", "h max", "seconds"], rows)
        + f"\n\nMachine: {machine()}."
    )
    write_section("neural-toys", body)
    print(body)


def digits(args: argparse.Namespace, command: str) -> None:
    d = load_dataset("digits")
    x = torch.tensor(d.x) / 16.0
    epochs = args.epochs or 150
    rows = []
    for seed in range(args.seeds):
        base = dict(hidden=(256, 128), image_shape=(8, 8))
        r, sec = _em(x, d.labels, 10, epochs=epochs, lr=1e-3, seed=seed, **base)
        rows.append(["MLP", "EM, eq. (6)", seed, r["acc"], r["nmi"], sec])
        networks = [
            ("MLP", dict(base), epochs),
            ("CNN", dict(arch="cnn", channels=(32, 64), hidden=(32,)), 100),  # C32-C64 (max-pooling between) F32 F10
        ]
        for label, net, net_epochs in networks:
            for consistency in (False, True):
                model = NeuralMixture(64, 10, augment=True, **net)
                guide = PosteriorGuide(model)
                model.initialize(x, seed=seed)
                res = mixzoo.fit(
                    model,
                    guide,
                    x,
                    loss=EM(),
                    step=two_fold(consistency_lr=1e-3, consistency=consistency),
                    epochs=net_epochs,
                    batch_size=128,
                    lr=1e-3,
                    seed=seed,
                    progress=False,
                )
                r = _evaluate(model, guide, x, d.labels)
                name = "two-fold (Algorithm 1)" if consistency else "EM, eq. (7) with augmentations"
                rows.append([label, name, seed, r["acc"], r["nmi"], res.seconds])
    body = (
        "## Neural mixture (001): digits\n\n"
        f"`{command}` - scikit-learn digits (1797 images 8x8, scaled to [0, 1]), MLP 256-128 ({epochs} epochs) or "
        "CNN C32-C64 F32 (100 epochs), batch 128, gamma 5, Adam 1e-3 for EM (and 1e-3 for the consistency step). Augmentation: shift/crop up to 10%, "
        "rotation up to 15 degrees, brightness/contrast.\n\n"
        + table(["network", "optimisation", "seed", "ACC", "NMI", "seconds"], rows)
        + f"\n\nMachine: {machine()}."
    )
    write_section("neural-digits", body)
    print(body)


def mnist(args: argparse.Namespace, command: str) -> None:
    d = load_dataset("mnist", data_dir=args.data_dir, subsample=args.subsample, seed=0)
    x = torch.tensor(d.x)
    epochs = args.epochs or 5
    channels = tuple(int(c) for c in args.channels.split(","))
    rows, curves = [], []
    for consistency in (False, True):
        model = NeuralMixture(784, 10, arch="cnn", channels=channels, hidden=(32,), augment=True, sobel=args.sobel)
        guide = PosteriorGuide(model)
        model.initialize(x, seed=0)
        accs: list[str] = []
        eval_seconds = [0.0]

        def track(
            epoch: int, result, model=model, guide=guide, accs=accs, eval_seconds=eval_seconds, two=consistency
        ) -> None:
            t0 = time.perf_counter()
            r = _evaluate(model, guide, x, d.labels)
            eval_seconds[0] += time.perf_counter() - t0
            accs.append(f"{r['acc']:.3f}")
            print(f"two-fold={two} epoch {epoch + 1}: acc {r['acc']:.4f} ({result.losses[-1]:.4f})", flush=True)

        start = time.perf_counter()
        res = mixzoo.fit(
            model,
            guide,
            x,
            loss=EM(),
            step=two_fold(consistency_lr=args.consistency_lr, consistency=consistency),
            epochs=epochs,
            batch_size=128,
            lr=args.lr,
            device=args.device,
            progress=False,
            callback=track,
        )
        r = _evaluate(model, guide, x.to(res.device), d.labels)
        sec = time.perf_counter() - start
        name = "two-fold (Algorithm 1)" if consistency else "EM, eq. (7)"
        rows.append(
            [name, len(x), epochs, r["acc"], r["nmi"], r["used"], (res.seconds - eval_seconds[0]) / epochs, sec]
        )
        curves.append(f"- {name}: ACC after each epoch {', '.join(accs)}")
    body = (
        f"## Neural mixture (001): MNIST, EM against the two-fold optimisation (Table 3; {len(x)} images, "
        f"consistency lr {args.consistency_lr:g}, {args.device})\n\n"
        f"`{command}` - CNN C{'-C'.join(map(str, channels))} (max-pooling between blocks) F32 F10"
        f"{', Sobel input' if args.sobel else ''}, batch 128, gamma 5, Adam {args.lr:g} for EM and "
        f"{args.consistency_lr:g} for the consistency step, {epochs} epochs on {len(x)} images"
        f"{' (a seeded subsample)' if args.subsample else ''}; s/epoch is training time only, the total also "
        "holds the evaluation after each epoch. The paper reports 98.44 (EM, eq. 7) and 98.88 (two-fold) after "
        "250 epochs on the full set.\n\n"
        + table(["optimisation", "n", "epochs", "ACC", "NMI", "used", "s/epoch", "total s"], rows)
        + "\n\n"
        + "\n".join(curves)
        + f"\n\nMachine: {machine()}; device {args.device}."
    )
    write_section(args.section, body)
    print(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("job", choices=("toys", "digits", "mnist"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--subsample", type=int, default=None)
    p.add_argument("--channels", default="32,64,128")
    p.add_argument("--sobel", action="store_true")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--consistency-lr", type=float, default=2e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--section", default="neural-mnist", help="mnist: docs/benchmarks.md section key")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU is shared)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    command = "python benchmarks/neural_mixture.py " + shlex.join(sys.argv[1:])
    {"toys": toys, "digits": digits, "mnist": mnist}[args.job](args, command)


if __name__ == "__main__":
    main()
