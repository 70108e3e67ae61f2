"""Does the Gaussian-mixture VAE's objective prefer the digits as its clusters? Train it from the labels.

    python benchmarks/gmvae_label_start.py [--data digits] [--seeds 3] [--samples 200]

For each seed, the default recipe of ``mixzoo fit --model gmvae --data digits --seed S`` (dequantized pixels,
VIMCO with 5 particles, 100 epochs, the std floors halved every 10) is trained from two starts:

- **GMM start**, the family's own: an autoencoder, then a diagonal GMM on its codes gives the cluster means,
  scales and the responsibilities that q(y|x) is taught (Li et al. 2020, section III);
- **label start**, a diagnostic: the same autoencoder, but the GMM is replaced by the true digits, so the cluster
  means and scales are those of each digit's codes and q(y|x) is taught the labels.

It records the ACC of argmax q(y|x) at the start and at the end, the clusters in use, and the marginal
log-likelihood per point of the trained model on its training data (an importance-sampled IWAE bound with
``--samples`` draws from the guide). If the label start ends at the better likelihood, the GMM start is a
worse local optimum of the same objective; if it ends at a worse one, the objective itself prefers other
clusters than the digits. Writes the section ``gmvae-label-start-<data>`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from unittest import mock

import numpy as np
import torch

import mixzoo
from mixzoo.analysis.metrics import clustering_report
from mixzoo.analysis.posterior import cluster_proba
from mixzoo.inference import make_loss
from mixzoo.inference.vimco import importance_log_likelihood
from mixzoo.models import get_family
from mixzoo.models.family import DataShape, Inference
from mixzoo.training.loop import fit

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, machine, table, write_section  # noqa: E402


class LabelMixture:
    """Stands in for scikit-learn's ``GaussianMixture`` in the pretraining: each cluster is one label's codes."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels

    def __call__(self, n_components: int, **_: object) -> LabelMixture:
        self.k = n_components
        return self

    def fit(self, codes: np.ndarray) -> LabelMixture:
        self.means_ = np.stack([codes[self.labels == c].mean(0) for c in range(self.k)])
        self.covariances_ = np.stack([codes[self.labels == c].var(0) + 1e-4 for c in range(self.k)])
        return self

    def predict_proba(self, codes: np.ndarray) -> np.ndarray:
        return np.eye(self.k)[self.labels]


def run(x: torch.Tensor, labels: np.ndarray, seed: int, start: str, samples: int) -> list[object]:
    spec = get_family("gmvae")
    options = spec.make_options()
    plan = spec.plan(options, DataShape(*x.shape), Inference(spec.default_guide, spec.default_loss))
    recipe = plan.training
    k = int(labels.max()) + 1
    loss = make_loss(spec.default_loss)
    t = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, guide = spec.build_pair(x.shape[1], k, spec.default_guide, options)
    if start == "labels":
        with mock.patch("sklearn.mixture.GaussianMixture", LabelMixture(labels)):
            plan.start(model, guide, x, seed, loss)
    else:
        plan.start(model, guide, x, seed, loss)

    def acc() -> float:
        return clustering_report(labels, cluster_proba(model, guide, x).detach().cpu().numpy())["acc"]

    first = acc()
    result = fit(model, guide, x, loss=loss, epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, seed=seed,
                 schedules=plan.schedules(model, guide), progress=False)  # fmt: skip
    p = cluster_proba(model, guide, x).detach().cpu().numpy()
    used = int((np.bincount(p.argmax(1), minlength=k) > 0).sum())
    torch.manual_seed(seed)
    ll = float(importance_log_likelihood(model, guide, x, num_samples=samples).mean())
    return [seed, start, first, clustering_report(labels, p)["acc"], used, ll, result.losses[-1], time.perf_counter() - t]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=200, help="importance samples of the log-likelihood")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.seeds < 1 or a.samples < 2:
        ap.error("--seeds must be at least 1 and --samples at least 2")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    rows = []
    for seed in range(a.seeds):
        d = mixzoo.load_dataset(a.data, seed=seed, dequantize=True)  # what `mixzoo fit --seed S` trains on
        x = torch.as_tensor(d.x)
        for start in ("gmm", "labels"):
            rows.append(run(x, d.labels, seed, start, a.samples))
            print(rows[-1], flush=True)
    shown = [[r[0], "GMM (the family's)" if r[1] == "gmm" else "labels (diagnostic)", f"{r[2]:.3f}", f"{r[3]:.3f}", r[4],
              f"{r[5]:.2f}", f"{r[6]:.2f}", f"{r[7]:.0f}"] for r in rows]  # fmt: skip
    gain = [lab[5] - gmm[5] for gmm, lab in zip(rows[0::2], rows[1::2], strict=True)]
    end = {s: [r[3] for r in rows if r[1] == s] for s in ("gmm", "labels")}
    body = "\n".join([
        f"## Gaussian-mixture VAE on {a.data}: the family's start against a start from the labels",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        f"Each row trains the default recipe of `mixzoo fit --model gmvae --data {a.data} --seed S` (dequantized pixels, "
        "q(z|x,y), VIMCO with 5 particles, 100 epochs, batch 128, Adam 1e-3, the std floors halved every 10 epochs) from "
        "the family's start (autoencoder, then a diagonal GMM on its codes) or from the labels (the same autoencoder; each "
        "cluster is one digit's codes, and q(y|x) is taught the digits). ACC of argmax q(y|x); log p(x) per point is the "
        f"{a.samples}-sample importance estimate on the training data after training (higher is better); the final loss is "
        "the last epoch's mean VIMCO loss per point.",
        "",
        table(["seed", "start", "ACC at the start", "ACC after training", "clusters used", "log p(x) per point",
               "final loss per point", "seconds"], shown),
        "",
        f"ACC after training: GMM start {statistics.mean(end['gmm']):.3f}, label start {statistics.mean(end['labels']):.3f} "
        f"(means over {a.seeds} seeds). log p(x) of the label start minus the GMM start's, per seed: "
        + ", ".join(f"{g:+.2f}" for g in gain) + " nats per point.",
    ])  # fmt: skip
    write_section(f"gmvae-label-start-{a.data}", body)
    print(body)


if __name__ == "__main__":
    main()
