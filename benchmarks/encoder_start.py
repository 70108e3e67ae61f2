"""How the encoder guide starts: taught the model's posterior at the model's start, or untrained at a high temperature.

    python benchmarks/encoder_start.py [--seeds 0,1,2] [--out FILE]

Two recipes for the amortized :math:`q(y \\mid x)` (``--guide encoder --loss trace-enum``), on the models and data where
they part ways:

- ``posterior start``: the encoder's own default: at temperature 1, it is first taught the model's posterior under the
  model's start (``--encoder-start posterior``), then trained with the model;
- ``Pires start``: untrained, its softmax at temperature 5 decaying by 0.98 per epoch to 1 (``--encoder-start none
  --temperature 5``), the variational mixture of flows' recipe (Pires 2020, section 5), and the flow mixture's plan.

Each row is ``mixzoo fit --model M --data D --guide encoder --loss trace-enum`` with the recipe's guide options, one
torch thread. Writes the section ``encoder-start`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import torch  # noqa: E402
from report import command, machine, table, write_section  # noqa: E402

from mixzoo.app.config import FitConfig  # noqa: E402
from mixzoo.app.runs import run_fit  # noqa: E402

README_MODEL = f"{Path(__file__).resolve().parent / 'readme_model.py'}:MyMixture"
RECIPES = {
    "posterior start": {"encoder_start": "posterior", "temperature": 1.0},
    "Pires start": {"encoder_start": "none", "temperature": 5.0, "temperature_decay": 0.98},
}
CASES = [("flow-mixture", "two-circles"), ("flow-mixture", "pinwheel"), ("gmm", "pinwheel"), ("student-t", "pinwheel"),
         ("readme", "pinwheel")]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = []
    for model, data in CASES:
        for recipe, options in RECIPES.items():
            accs, used, secs = [], [], []
            for seed in seeds:
                start = time.perf_counter()
                config = FitConfig(model=README_MODEL if model == "readme" else model, data=data, guide="encoder",
                                   loss="trace-enum", guide_options=dict(options), seed=seed, threads=1)  # fmt: skip
                r = run_fit(config, progress=False)
                accs.append(r["acc"])
                used.append(r["clusters_used"])
                secs.append(time.perf_counter() - start)
                print(model, data, recipe, seed, r["acc"], r["clusters_used"], flush=True)
            sd = statistics.pstdev(accs)
            rows.append([f"`{model}`", data, recipe, f"{statistics.mean(accs):.3f} ± {sd:.3f}",
                         ", ".join(f"{v:.3f}" for v in accs), min(used), f"{statistics.mean(secs):.1f}"])  # fmt: skip
    body = [
        "## Encoder start: the model's posterior at temperature 1, or untrained at temperature 5",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "Each row: `mixzoo fit --model M --data D --guide encoder --loss trace-enum --seed S` with the recipe's guide "
        "options (posterior start: `--encoder-start posterior --temperature 1`, the encoder's default; Pires start: "
        "`--encoder-start none --temperature 5 --temperature-decay 0.98`, the flow mixture's plan), the family's "
        f"plan otherwise; seeds {', '.join(map(str, seeds))}: ACC mean ± sd (ddof 0), the fewest clusters in use, "
        "seconds per run. `readme` is the model of \"Writing a model\" in docs/your-model.md (unit-variance Gaussians with learned "
        "means), from its file.",
        "",
        table(["model", "data", "recipe", "ACC", "ACC per seed", "min clusters used", "seconds"], rows),
    ]
    print(f"wrote {write_section('encoder-start', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
