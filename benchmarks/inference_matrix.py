"""Every valid (model, guide, loss) on 2-D toys and digits: the inference matrix.

    python benchmarks/inference_matrix.py [--data pinwheel,moons,digits] [--models gmm,...,readme]
                                          [--seeds 0,1,2] [--cache runs/inference-matrix.jsonl] [--out FILE]

For every registered family and for the model of "Writing a model" in docs/your-model.md (``readme``: unit-variance
Gaussians with learned means, written to the contract, stating nothing), every (guide, loss) that
``Family.inference_table`` allows is trained with the family's plan for the data, exactly as ``mixzoo fit --model M
--data D --guide G --loss L --seed S`` does (in this process, one torch thread). Each run records ACC, NMI, the
expected number of misclassified points (the sum of one minus each point's largest cluster probability), the actual
number after the Hungarian match, and the seconds of training. Runs are cached (one JSON line each), so the table can
be filled in several sittings. Writes the sections ``inference-matrix`` (every run's mean and spread over seeds) and
``inference-matrix-summary`` (per family and data set: the default, the best and the worst pair) of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from report import command, commit, machine, table, write_section  # noqa: E402

from mixzoo.app.config import FitConfig, family_of  # noqa: E402
from mixzoo.app.runs import run_fit  # noqa: E402
from mixzoo.models import MODELS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
README_MODEL = f"{Path(__file__).resolve().parent / 'readme_model.py'}:MyMixture"
DATA = ("pinwheel", "moons", "digits")


def _model_name(model: str) -> str:
    return "readme" if model == README_MODEL else model


def _valid(model: str) -> list[tuple[str, str]]:
    table_ = family_of(model).inference_table()
    return [(g, loss) for g, row in table_.items() for loss, why in row.items() if why is None]


def _run(model: str, data: str, guide: str, loss: str, seed: int) -> dict[str, object]:
    start = time.perf_counter()
    try:
        config = FitConfig(model=model, data=data, guide=guide, loss=loss, seed=seed, threads=1, calibration="none")
        r = run_fit(config, progress=False)
    except Exception as err:  # a failing run is a row of the table, not a crash
        traceback.print_exc()
        return {"error": f"{type(err).__name__}: {err}"[:200], "wall": time.perf_counter() - start}
    keys = ("acc", "nmi", "expected_misclassified", "misclassified", "clusters_used", "seconds", "epochs")
    return {k: r[k] for k in keys} | {"wall": time.perf_counter() - start}


def _load(cache: Path) -> dict[tuple, dict]:
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[(row["data"], row["model"], row["guide"], row["loss"], row["seed"])] = row
    return done


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def _cell(runs: list[dict]) -> dict[str, object]:
    ok = [r for r in runs if "error" not in r]
    errors = [r["error"] for r in runs if "error" in r]
    ratio = [r["expected_misclassified"] / max(r["misclassified"], 1) for r in ok]
    return {
        "acc": [r["acc"] for r in ok],
        "nmi": [r["nmi"] for r in ok],
        "expected": statistics.mean(r["expected_misclassified"] for r in ok) if ok else None,
        "actual": statistics.mean(r["misclassified"] for r in ok) if ok else None,
        "ratio": statistics.median(ratio) if ratio else None,
        "used": min(r["clusters_used"] for r in ok) if ok else None,
        "seconds": statistics.mean(r["seconds"] for r in ok) if ok else None,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=",".join(DATA))
    ap.add_argument("--models", default=",".join([*MODELS, "readme"]))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "inference-matrix.jsonl"))
    ap.add_argument("--out", default=None, help="write the sections into this file (default docs/benchmarks.md)")
    ap.add_argument("--from-cache", action="store_true", help="write the sections from the cached runs, run nothing")
    ap.add_argument("--measured-at", default=None, help="the commit the cached runs were measured at (default HEAD)")
    a = ap.parse_args()
    datas, seeds = a.data.split(","), [int(s) for s in a.seeds.split(",")]
    models = [README_MODEL if m == "readme" else m for m in a.models.split(",")]
    cache = Path(a.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = _load(cache)
    for data in datas:
        for model in models:
            for guide, loss in _valid(model):
                for seed in seeds:
                    key = (data, _model_name(model), guide, loss, seed)
                    if key in done or a.from_cache:
                        continue
                    row = {"data": data, "model": _model_name(model), "guide": guide, "loss": loss, "seed": seed,
                           **_run(model, data, guide, loss, seed)}  # fmt: skip
                    done[key] = row
                    with cache.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), flush=True)
    _write(done, datas, models, seeds, a)


def _write(done: dict[tuple, dict], datas: list[str], models: list[str], seeds: list[int], a: argparse.Namespace) -> None:
    header = ["model", "guide / loss", "ACC", "NMI", "expected / actual misclassified (ratio)", "min clusters used", "seconds"]
    body = [
        f"Command: `{command()}`  ",
        f"Machine: {machine(measured_at=a.measured_at)}"
        + (f" (the runs were measured at that commit; HEAD is {commit()})" if a.measured_at else "") + "  ",
        "Every (guide, loss) that each model's declared capabilities allow (`mixzoo models`), trained with the model's "
        "plan for the data, exactly as `mixzoo fit --model M --data D --guide G --loss L --seed S --calibration none` "
        "does (the fit's own probabilities: the section `calibration` measures the default's), one torch "
        f"thread, seeds {', '.join(map(str, seeds))}: ACC and NMI mean ± sd; the expected number of misclassified points "
        "(sum of 1 - max cluster probability) and the actual number after the Hungarian match, means over seeds, with "
        "the median ratio; seconds of training, mean. `readme` is the model of \"Writing a model\" in docs/your-model.md "
        "(unit-variance Gaussians with learned means, no stated table), run from its file. **default** marks each "
        "family's own recipe.",
        "",
    ]
    summary_rows = []
    for data in datas:
        rows = []
        for model in models:
            name = _model_name(model)
            family = family_of(model)
            cells = []
            for guide, loss in _valid(model):
                runs = [done[k] for s in seeds if (k := (data, name, guide, loss, s)) in done]
                if not runs:
                    continue
                c = _cell(runs)
                default = (guide, loss) == (family.default_guide, family.default_loss)
                label = f"{guide} / {loss}" + (" **default**" if default else "")
                if c["acc"]:
                    expected = f"{c['expected']:.1f} / {c['actual']:.1f} ({c['ratio']:.2f})"
                    rows.append([f"`{name}`", label, _mean_sd(c["acc"]), _mean_sd(c["nmi"]), expected, c["used"], f"{c['seconds']:.1f}"])
                    cells.append((guide, loss, statistics.mean(c["acc"]), default))
                else:
                    rows.append([f"`{name}`", label, "failed: " + c["errors"][0].replace("|", "/"), "-", "-", "-", "-"])
            if cells:
                best = max(cells, key=lambda t: t[2])
                worst = min(cells, key=lambda t: t[2])
                default_acc = next((t[2] for t in cells if t[3]), None)
                summary_rows.append([data, f"`{name}`", len(cells), "-" if default_acc is None else f"{default_acc:.3f}",
                                     f"{best[0]} / {best[1]} {best[2]:.3f}", f"{worst[0]} / {worst[1]} {worst[2]:.3f}"])  # fmt: skip
        body += [f"**{data}**", "", table(header, rows), ""]
    write_section("inference-matrix", "## Inference matrix: every model under every inference that serves it\n\n" + "\n".join(body), a.out)
    summary = [
        "## Inference matrix, in short",
        "",
        f"From the section `inference-matrix` (command: `{command()}`; commit {a.measured_at or commit()}): per model "
        "and data set, the "
        "number of (guide, loss) pairs that serve it, the mean ACC over seeds of its default recipe, and its best and "
        "worst pair.",
        "",
        table(["data", "model", "pairs", "default ACC", "best pair", "worst pair"], summary_rows),
    ]
    path = write_section("inference-matrix-summary", "\n".join(summary), a.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
