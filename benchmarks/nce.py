"""Noise-contrastive estimation: consistency on the 000 paper's simulation, and MNIST transfer clustering.

    python benchmarks/nce.py simulation [--reps 20]
    python benchmarks/nce.py transfer --data-dir ../shared/data/mnist [--classifier-epochs 5] [--epochs 30]
    python benchmarks/nce.py features --data-dir ../shared/data/mnist [--feature-dims 8 16 32 64 128] [--classifier-seeds 3]
    python benchmarks/nce.py pairs --data-dir ../shared/data/mnist [--epochs 30] [--classifier mlp|cnn]
        [--classifier-training cross-entropy|augmented|contrastive]

Each part writes its own section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Sequence
from unittest import mock

import numpy as np
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture as SkGMM

import mixzoo
from mixzoo import EmptyGuide
from mixzoo.analysis.metrics import clustering_report
from mixzoo.app.transfer import CLASSIFIERS, TransferClassifier, build_classifier, default_classifier, transfer_split
from mixzoo.data import load_dataset
from mixzoo.inference import NCE
from mixzoo.models import EnergyMixture
from mixzoo.nets.augment import Augment

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402

TRUE = np.array(
    [
        [-0.5, 0.0, math.log(0.5) - 0.5 * math.log(2 * math.pi)],
        [-0.5, 4.0, math.log(0.5) - 8.0 - 0.5 * math.log(2 * math.pi)],
    ]
)


def _fit_simulation(n: int, seed: int, multi: bool) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, generator=g) < 0.5
    x = torch.randn(n, 1, generator=g) + 4 * z[:, None]
    torch.manual_seed(seed)
    if multi:
        n1 = dist.Normal(torch.zeros(1), torch.ones(1)).to_event(1)
        n2 = dist.Normal(4 * torch.ones(1), torch.ones(1)).to_event(1)
        loss = NCE([(n1, n // 2), (n2, n // 2)])
        noise = [n1.sample((n // 2,)), n2.sample((n // 2,))]
    else:
        nd = dist.Normal(torch.tensor([2.0]), torch.tensor([math.sqrt(5.0)])).to_event(1)
        loss = NCE([(nd, n)])
        noise = [nd.sample((n,))]
    model = EnergyMixture(1, 2, "quadratic")
    with torch.no_grad():
        model.theta.copy_(torch.tensor([[-0.4, 0.5], [-0.4, 3.0]]))
        model.c.copy_(torch.tensor([-2.0, -12.0]))
    opt = torch.optim.LBFGS(model.parameters(), max_iter=300, line_search_fn="strong_wolfe", tolerance_grad=1e-10)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss.differentiable_loss(model, EmptyGuide(), x, noise_samples=noise) / n
        value.backward()
        return value

    opt.step(closure)
    est = torch.cat([model.theta, model.c[:, None]], 1).detach().numpy()
    return est[np.argsort(-est[:, 1] / (2 * est[:, 0]))]  # smaller mean first, as the paper does


def simulation(a: argparse.Namespace) -> None:
    sizes = [2**p for p in range(9, 15)]
    rows, slopes = [], []
    for multi in (False, True):
        mse_theta, mse_c = [], []
        for n in sizes:
            errs = [(_fit_simulation(n, 1000 * r + n, multi) - TRUE) ** 2 for r in range(a.reps)]
            mse_theta.append(float(np.median([e[:, :2].mean() for e in errs])))
            mse_c.append(float(np.median([e[:, 2].mean() for e in errs])))
            rows.append(["two noises N(0,1), N(4,1)" if multi else "one noise N(2,5)", n, mse_theta[-1], mse_c[-1]])
            print(rows[-1], flush=True)
        lx = np.log10(sizes)
        slopes.append(
            ["two noises" if multi else "one noise", float(np.polyfit(lx, np.log10(mse_theta), 1)[0]), float(np.polyfit(lx, np.log10(mse_c), 1)[0])]
        )
    body = "\n".join(
        [
            "## NCE consistency: 0.5 N(0,1) + 0.5 N(4,1) (the 000 paper's simulation, Fig. 1)",
            "",
            f"Command: `python benchmarks/nce.py simulation --reps {a.reps}`  ",
            f"Machine: {machine()}  ",
            "Model exp(theta_k1 x^2 + theta_k2 x + c_k), K = 2, M = N noise samples; full-batch L-BFGS on the NCE loss "
            f"from a fixed start; median over {a.reps} repetitions of the squared error (mean over the 2 components), "
            "components ordered by their mean.",
            "",
            "Slope of log10 median MSE against log10 N (1/N consistency gives -1):",
            "",
            table(["noise", "slope theta", "slope c"], slopes),
            "",
            table(["noise", "N", "median MSE theta", "median MSE c"], rows),
        ]
    )
    write_section("nce-simulation", body)
    print(body)


def _kmeans_proba(f: np.ndarray, k: int = 5) -> np.ndarray:
    """One-hot assignments of k-means (n_init 10), the first baseline on the transfer features."""
    return np.eye(k)[KMeans(k, n_init=10, random_state=0).fit(f).labels_]


def _gmm_proba(f: np.ndarray, k: int = 5) -> np.ndarray:
    """Posterior of a diagonal GMM (scikit-learn), the second baseline on the transfer features."""
    return SkGMM(k, covariance_type="diag", reg_covar=1e-4, random_state=0).fit(f).predict_proba(f)


def transfer(a: argparse.Namespace) -> None:
    d = load_dataset("mnist", data_dir=a.data_dir)
    t = time.perf_counter()
    td = transfer_split(d.x, d.labels, [0, 1, 2, 3, 4], epochs=a.classifier_epochs, seed=0, device=a.device)
    t_cls = time.perf_counter() - t
    f, lab = td.features, td.labels
    rows = []

    def add(name: str, proba: np.ndarray, seconds: float) -> None:
        m = clustering_report(lab, proba)
        rows.append([name, m["acc"], m["nmi"], m["ari"], round(m["expected_misclassified"], 1), m["misclassified"], seconds])
        print(rows[-1], flush=True)

    t = time.perf_counter()
    add("k-means (n_init 10)", _kmeans_proba(f), time.perf_counter() - t)
    t = time.perf_counter()
    add("diagonal GMM (sklearn)", _gmm_proba(f), time.perf_counter() - t)
    x = torch.as_tensor(f, device=a.device)
    # the joint start (logistic regression on the k-means partition), the ablation: NCE lets all but one component die
    init = EnergyMixture(x.shape[1], 5, "linear").to(a.device).initialize(x, 0)
    add("energy mixture, joint start (k-means + logistic regression)", mixzoo.cluster_proba(init, EmptyGuide(), x).cpu().numpy(), 0.0)
    r = mixzoo.fit(init, EmptyGuide(), x, loss=NCE(td.noise), epochs=max(a.epochs), lr=a.lr, batch_size=1024, device=a.device, progress=False)
    add(f"energy mixture, joint start, NCE {max(a.epochs)} epochs", mixzoo.cluster_proba(init, EmptyGuide(), x).cpu().numpy(), r.seconds)
    final = []
    for seed in range(a.seeds):
        t = time.perf_counter()
        start = EnergyMixture(x.shape[1], 5, "linear").to(a.device).initialize(x, seed, nce=NCE(td.noise))
        t_init = time.perf_counter() - t
        add(f"energy mixture, component-wise NCE start, seed {seed}", mixzoo.cluster_proba(start, EmptyGuide(), x).cpu().numpy(), t_init)
        for epochs in a.epochs:
            model = EnergyMixture(x.shape[1], 5, "linear").to(a.device)
            model.load_state_dict(start.state_dict())
            r = mixzoo.fit(model, EmptyGuide(), x, loss=NCE(td.noise), epochs=epochs, lr=a.lr, batch_size=1024, device=a.device, seed=seed, progress=False)
            add(f"energy mixture, component-wise start, NCE {epochs} epochs, seed {seed}", mixzoo.cluster_proba(model, EmptyGuide(), x).cpu().numpy(), t_init + r.seconds)
        final.append(rows[-1])
    acc = np.array([r[1] for r in final])
    ratio = np.array([r[4] / r[5] for r in final])
    body = "\n".join(
        [
            "## Deep transfer clustering, MNIST 0-4 -> 5-9 (the 000 paper's recipe)",
            "",
            f"Command: `python benchmarks/nce.py transfer --data-dir DIR --classifier-epochs {a.classifier_epochs} --epochs {' '.join(map(str, a.epochs))} --seeds {a.seeds}`  ",
            f"Machine: {machine()}  ",
            f"Classifier: MLP 784-256-64-5 trained {a.classifier_epochs} epochs on the {td.noise.size} images of digits 0-4 "
            f"(training accuracy {td.classifier_accuracy:.3f}, {t_cls:.0f} s); all methods cluster the {len(lab)} images of "
            "digits 5-9 on its 64 last-hidden-layer features. NCE uses the classifier's training data as noise (eq. 28-32); "
            f"Adam lr {a.lr}, batch 1024. The CLI equivalent: `mixzoo fit --model energy-mixture --loss nce --data mnist "
            f"--data-dir DIR --pretrain-classes 0,1,2,3,4 --classifier mlp --classifier-epochs {a.classifier_epochs} "
            "--clusters 5 --json`.",
            "",
            "Starts: the joint start fits a logistic regression to the k-means partition; the component-wise start "
            "(the default under NCE) fits each component alone by NCE on its k-means cluster against the same noise, "
            "weighted by N_k/N. Seconds of the component-wise rows include the start.",
            "",
            table(["method", "ACC", "NMI", "ARI", "expected misclassified", "actual misclassified", "seconds"], rows),
            "",
            f"Component-wise start, NCE {max(a.epochs)} epochs, over {a.seeds} seeds: ACC {acc.mean():.3f} +- {acc.std():.3f} "
            f"(min {acc.min():.3f}; k-means {rows[0][1]:.3f}, diagonal GMM {rows[1][1]:.3f}); expected / actual misclassified "
            f"{ratio.mean():.2f} (min {ratio.min():.2f}, max {ratio.max():.2f}; diagonal GMM {rows[1][4] / rows[1][5]:.3f}).",
        ]
    )
    write_section("nce-transfer", body)
    print(body)


def features(a: argparse.Namespace) -> None:
    """Transfer clustering against the classifier's feature dimension and its seed: ACC and calibration."""
    d = load_dataset("mnist", data_dir=a.data_dir)
    epochs = max(a.epochs)
    rows, summary = [], []
    for dim in a.feature_dims:
        per_dim = []
        for cseed in range(a.classifier_seeds):
            td = transfer_split(d.x, d.labels, [0, 1, 2, 3, 4], epochs=a.classifier_epochs, seed=cseed, device=a.device, feature_dim=dim)
            f, lab = td.features, td.labels
            km, gm = clustering_report(lab, _kmeans_proba(f)), clustering_report(lab, _gmm_proba(f))
            x = torch.as_tensor(f, device=a.device)
            model = EnergyMixture(dim, 5, "linear").to(a.device).initialize(x, 0, nce=NCE(td.noise))
            mixzoo.fit(model, EmptyGuide(), x, loss=NCE(td.noise), epochs=epochs, lr=a.lr, batch_size=1024, device=a.device, seed=0, progress=False)
            m = clustering_report(lab, mixzoo.cluster_proba(model, EmptyGuide(), x).cpu().numpy())
            ratio = m["expected_misclassified"] / m["misclassified"]
            per_dim.append((m["acc"], ratio, m["acc"] > max(km["acc"], gm["acc"])))
            rows.append([dim, cseed, td.classifier_accuracy, km["acc"], gm["acc"], m["acc"], m["nmi"],
                         round(m["expected_misclassified"], 1), m["misclassified"], ratio])
            print(rows[-1], flush=True)
        acc, ratio, above = (np.array(v) for v in zip(*per_dim, strict=True))
        summary.append([dim, f"{acc.mean():.3f} +- {acc.std():.3f}", f"{ratio.mean():.2f} ({ratio.min():.2f}-{ratio.max():.2f})",
                        f"{int(above.sum())} / {len(above)}", int(((ratio >= 0.65) & (ratio <= 1.35) & above).sum())])
    body = "\n".join(
        [
            "## Deep transfer clustering, MNIST 0-4 -> 5-9: feature dimension and classifier seed",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine()}  ",
            f"Classifier: MLP 784-256-F-5 (F features after a ReLU), trained {a.classifier_epochs} epochs on digits 0-4 with "
            f"seeds 0..{a.classifier_seeds - 1}; the energy mixture (component-wise start, seed 0, NCE {epochs} epochs, "
            f"Adam lr {a.lr}, batch 1024), k-means (n_init 10) and a diagonal GMM cluster digits 5-9 on the same F features. "
            "Ratio: expected / actual misclassified for the NCE posterior (the goal: 0.65-1.35).",
            "",
            table(["F", "classifier seed", "classifier train acc", "k-means ACC", "GMM ACC", "NCE ACC", "NCE NMI",
                   "expected misclassified", "actual misclassified", "ratio"], rows),
            "",
            table(["F", "NCE ACC (mean +- sd)", "ratio mean (range)", "NCE above both baselines", "runs meeting both goals"], summary),
        ]
    )
    write_section("nce-transfer-features", body)
    print(body)


TRAININGS = ("cross-entropy", "augmented", "contrastive")
TRAINING_TEXT = {
    "cross-entropy": "",
    "augmented": ", cross-entropy on a random affine transformation of each batch (mixzoo.nets.augment.Augment's defaults)",
    "contrastive": ", cross-entropy on two random transformations of each batch plus SimCLR's NT-Xent loss (temperature 0.5, "
    "a 64-32 projection head) on their features",
}


def variant_classifier(training: str) -> object:
    """A stand-in for :func:`mixzoo.app.transfer.train_classifier` that trains the same network another way.

    A diagnostic: do features that keep more than the pretrain classes apart transfer better to unseen ones?
    The head stays linear on the features, so the noise density of eq. (28) still holds.
    """

    def train(x: torch.Tensor, labels: torch.Tensor, n_classes: int, *, epochs: int = 5, batch_size: int = 128,
              lr: float = 1e-3, seed: int = 0, feature_dim: int = 64, kind: str = "mlp",
              image_shape: Sequence[int] | None = None) -> TransferClassifier:  # fmt: skip
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        net = build_classifier(kind, x.shape[1], n_classes, image_shape=image_shape, feature_dim=feature_dim)  # type: ignore[arg-type]
        head = torch.nn.Sequential(torch.nn.Linear(feature_dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
        augment = Augment(image_shape)  # type: ignore[arg-type]
        opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=lr)
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(batch_size):
                xb, yb = x[idx], labels[idx]
                if training == "augmented":
                    loss = F.cross_entropy(net(augment(xb, g)), yb)
                else:
                    f = net.features(torch.cat([augment(xb, g), augment(xb, g)]))
                    z = F.normalize(head(f), dim=1)
                    sim = (z @ z.T / 0.5).fill_diagonal_(-1e9)
                    n = len(xb)
                    pair = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
                    loss = F.cross_entropy(net.head(f), torch.cat([yb, yb])) + F.cross_entropy(sim, pair)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return net.eval()

    return train


CLASSIFIER_TEXT = {"mlp": "MLP 784-256-64-5", "cnn": "CNN C32-pool-C64-pool-64-5 (3x3 convolutions, 2x2 max-pooling)"}


def pairs(a: argparse.Namespace) -> None:
    """The paper's setting: two unseen classes at a time, every pair of the held-out digits 5-9."""
    import itertools

    if a.classifier_training != "cross-entropy" and a.classifier == "mlp":  # MNIST's own default is the CNN
        raise SystemExit("--classifier-training other than cross-entropy transforms images: it needs --classifier cnn")
    d = load_dataset("mnist", data_dir=a.data_dir)
    kind = a.classifier or default_classifier(d.image_shape)
    t = time.perf_counter()
    with mock.patch("mixzoo.app.transfer.train_classifier", variant_classifier(a.classifier_training)) \
            if a.classifier_training != "cross-entropy" else contextlib.nullcontext():
        td = transfer_split(d.x, d.labels, [0, 1, 2, 3, 4], epochs=a.classifier_epochs, seed=0, device=a.device, classifier=kind,
                            image_shape=d.image_shape)  # fmt: skip
    t_cls = time.perf_counter() - t
    epochs, rows = max(a.epochs), []
    for pair in itertools.combinations(range(5, 10), 2):
        keep = np.isin(td.labels, pair)
        f, lab = td.features[keep], td.labels[keep]
        x = torch.as_tensor(f, device=a.device)
        t = time.perf_counter()
        model = EnergyMixture(x.shape[1], 2, "linear").to(a.device).initialize(x, 0, nce=NCE(td.noise))
        mixzoo.fit(model, EmptyGuide(), x, loss=NCE(td.noise), epochs=epochs, lr=a.lr, batch_size=1024, device=a.device, seed=0, progress=False)
        seconds = time.perf_counter() - t
        m = clustering_report(lab, mixzoo.cluster_proba(model, EmptyGuide(), x).cpu().numpy())
        km, gm = clustering_report(lab, _kmeans_proba(f, 2)), clustering_report(lab, _gmm_proba(f, 2))
        rows.append([f"{pair[0]},{pair[1]}", len(lab), km["acc"], gm["acc"], m["acc"], round(m["expected_misclassified"], 1),
                     m["misclassified"], round(m["expected_misclassified"] / max(m["misclassified"], 1), 2), round(seconds, 1)])  # fmt: skip
        print(rows[-1], flush=True)
    acc = np.array([r[4] for r in rows])
    ratio = np.array([r[7] for r in rows])
    km_acc = np.array([r[2] for r in rows])
    body = "\n".join(
        [
            f"## Deep transfer clustering, MNIST 0-4 -> every pair of 5-9 (the paper's two unseen classes), {kind.upper()} features"
            f"{'' if a.classifier_training == 'cross-entropy' else ', classifier training: ' + a.classifier_training}",
            "",
            f"Command: `{command()}`  ",
            f"Machine: {machine()}  ",
            f"One classifier ({CLASSIFIER_TEXT[kind]}, {a.classifier_epochs} epochs on digits 0-4, training accuracy "
            f"{td.classifier_accuracy:.3f}, {t_cls:.0f} s{TRAINING_TEXT[a.classifier_training]}) gives the features; for each pair of held-out digits the energy mixture "
            f"(K = 2, component-wise NCE start, NCE {epochs} epochs, Adam lr {a.lr}, batch 1024, the classifier's training data as "
            "noise), k-means and a diagonal GMM cluster that pair's images. The CLI equivalent of one row: `mixzoo fit --model "
            f"energy-mixture --data mnist --data-dir DIR --pretrain-classes 0,1,2,3,4 --cluster-classes 5,6 --classifier {kind} --json`.",
            "",
            table(["pair", "images", "k-means ACC", "GMM ACC", "NCE ACC", "expected misclassified", "actual misclassified",
                   "expected / actual", "NCE seconds"], rows),
            "",
            f"NCE over the 10 pairs: ACC {acc.mean():.3f} +- {acc.std():.3f} (min {acc.min():.3f}; {int((acc >= 0.95).sum())} of 10 "
            f"pairs at 0.95 or more; k-means {km_acc.mean():.3f}); expected / actual misclassified {np.median(ratio):.2f} (median; "
            f"range {ratio.min():.2f}-{ratio.max():.2f}; {int(((ratio >= 0.65) & (ratio <= 1.35)).sum())} of 10 within 0.65-1.35). "
            "The paper: about 0.99 with 170 expected against 245 actual (0.69) on Inception features of unseen ImageNet-like classes.",
        ]
    )
    training = "" if a.classifier_training == "cross-entropy" else f"-{a.classifier_training}"
    write_section("nce-transfer-pairs" + ("" if kind == "mlp" else f"-{kind}") + training, body)
    print(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=("simulation", "transfer", "features", "pairs"))
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--classifier-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, nargs="+", default=[1, 5, 30])
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seeds", type=int, default=3, help="transfer: seeds of the component-wise start")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--feature-dims", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="features: classifier feature sizes")
    ap.add_argument("--classifier-seeds", type=int, default=3, help="features: classifier seeds per feature size")
    ap.add_argument("--classifier-training", choices=TRAININGS, default="cross-entropy",
                    help="pairs: how the CNN classifier is trained (a diagnostic; the CLI trains by cross-entropy)")
    ap.add_argument("--classifier", choices=CLASSIFIERS, default=None, help="pairs: the transfer classifier (default: the CLI's for images)")
    a = ap.parse_args()
    {"simulation": simulation, "transfer": transfer, "features": features, "pairs": pairs}[a.part](a)


if __name__ == "__main__":
    main()
