"""Gaussian-mixture VAE: the three losses, std annealing and the mean-field guide, side by side.

    python benchmarks/gmvae.py --data digits [--epochs 100] [--device cpu]
    python benchmarks/gmvae.py --data mnist --data-dir DIR --device cuda --epochs 50 --batch-size 512
    python benchmarks/gmvae.py --data mnist --data-dir DIR --subsample 10000 --epochs 15 --pretrain 5

(the last one is the full mode of tutorials/03_gmvae.ipynb).

Writes the section gmvae-<data>-<device> of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from mixzoo.app.config import FitConfig
from mixzoo.app.runs import run_fit

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import machine, table, write_section  # noqa: E402

VARIANTS = [
    ("VIMCO + std annealing, q(z|x,y)", "vimco", "qzxy", True),
    ("EnumY + std annealing, q(z|x,y)", "trace-enum", "qzxy", True),
    ("EnumY without annealing, q(z|x,y)", "trace-enum", "qzxy", False),
    ("VIMCO + std annealing, mean-field", "vimco", "mean-field", True),
    ("NVIL + std annealing, q(z|x,y)", "trace-graph", "qzxy", True),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--anneal-every", type=int, default=10)
    ap.add_argument("--subsample", type=int, default=None, help="a seeded subsample of this many points")
    ap.add_argument("--pretrain", type=int, default=20, help="autoencoder pretraining epochs")
    ap.add_argument("--scale", action="store_true", help="standardise each pixel (default: raw pixel values, as the paper)")
    ap.add_argument("--dequantize", action="store_true", help="(level + U[0, 1)) / levels, the paper's preprocessing")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    for name, loss, guide, anneal in VARIANTS:
        options = {"anneal_every": a.anneal_every if anneal else 0, "pretrain": a.pretrain}
        try:
            r = run_fit(
                FitConfig(model="gmvae", data=a.data, data_dir=a.data_dir, loss=loss, guide=guide, epochs=a.epochs,
                          batch_size=a.batch_size, scale=a.scale, dequantize=a.dequantize, device=a.device, options=options,
                          subsample=a.subsample),
                progress=False,
            )
            rows.append([name, r["acc"], r["nmi"], r["ari"], r["seconds"]])
        except Exception as err:  # a diverging run is reported, not hidden
            rows.append([name, "diverged", str(err).split(";")[0][:60], "", ""])
        print(rows[-1], flush=True)
    sub = f" --subsample {a.subsample}" if a.subsample else ""
    pre = f" --pretrain {a.pretrain}" if a.pretrain != 20 else ""
    scale = (" --scale" if a.scale else "") + (" --dequantize" if a.dequantize else "")
    what = f"{a.data}, a seeded subsample of {a.subsample} images" if a.subsample else a.data
    body = "\n".join(
        [
            f"## Gaussian-mixture VAE on {what}{', standardised' if a.scale else ''}{', dequantized' if a.dequantize else ''} ({a.device})",
            "",
            f"Command: `python benchmarks/gmvae.py --data {a.data} --device {a.device} --epochs {a.epochs} "
            f"--batch-size {a.batch_size}{sub}{pre}{scale}`  ",
            f"Machine: {machine()}  ",
            f"Each row: `mixzoo fit --model gmvae --data {a.data}{scale}{sub} --loss L --guide G --epochs {a.epochs} "
            f"--batch-size {a.batch_size} [--anneal-every {a.anneal_every} | 0] --pretrain {a.pretrain}` (latent 10, MLP "
            f"256x256, {a.pretrain} epochs of autoencoder pretraining + GMM on the codes, VIMCO with 5 particles, Adam "
            "1e-3, seed 0); seconds include the pretraining.",
            "",
            table(["variant", "ACC", "NMI", "ARI", "seconds"], rows),
        ]
    )
    write_section(f"gmvae-{a.data}{'-' + str(a.subsample) if a.subsample else ''}{'-scaled' if a.scale else ''}{'-dequantized' if a.dequantize else ''}-{a.device}", body)
    print(body)


if __name__ == "__main__":
    main()
