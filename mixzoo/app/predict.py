"""Label new points with a fitted run: ``mixzoo predict --run DIR --data PATH --out FILE``.

The new data go through the run's own preprocessing (the columns it was fitted on,
dequantization levels, scaling, PCA; see :mod:`mixzoo.data.transform`) and the run's model
gives each point its cluster probabilities. The output has one row per input point, in
input order: ``cluster`` (the most probable), ``confidence`` (its probability) and
``p_0 .. p_{K-1}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..analysis.draws import predictive_proba
from ..analysis.posterior import cluster_proba
from ..data import load_dataset
from ..data.transform import PREPROCESSING, Preprocessing
from ..data.validation import check_data, check_device
from ..errors import MixzooInputError
from .run_dir import run_temperature
from .runs import load_run, run_draws

__all__ = ["predict_run", "check_output", "write_predictions", "OUTPUT_SUFFIXES"]

OUTPUT_SUFFIXES = (".csv", ".parquet", ".npy")


def predict_run(run_dir: str, data: str, *, model: str | None = None, device: str = "cpu", data_dir: str | None = None) -> np.ndarray:
    """(N, K) cluster probabilities of the points in ``data`` under the run in ``run_dir``."""
    check_device(device)
    m, g, c = load_run(run_dir, model=model)
    if c.pretrain_classes:
        raise MixzooInputError(
            f"the run in {run_dir!r} clusters the features of a transfer classifier (--pretrain-classes), which the run "
            "does not keep; predict works on runs fitted on the data's own features."
        )
    prep = Preprocessing.load(Path(run_dir) / PREPROCESSING)
    try:
        table = Path(data).suffix.lower() in (".csv", ".tsv", ".parquet")  # arrays have no names: their order counts
        raw = load_dataset(data, data_dir=data_dir, columns=list(prep.features) if prep.features and table else None)
    except MixzooInputError as err:
        if prep.features is None:
            raise
        raise MixzooInputError(f"the run was fitted on the columns {', '.join(prep.features)}: {err}") from None
    x = check_data(prep.apply(raw.x), dim=c.dim)
    draws = run_draws(run_dir)
    if draws is not None:  # --sampler nuts: the posterior predictive over the run's draws
        return predictive_proba(m, draws, x)
    m.to(device)
    g.to(device)
    return cluster_proba(m, g, x.to(device), temperature=run_temperature(run_dir)).cpu().double().numpy()


def _table(proba: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    names = ["cluster", "confidence", *(f"p_{k}" for k in range(proba.shape[1]))]
    return names, proba.argmax(1), proba.max(1)


def check_output(out: str | None, overwrite: bool) -> None:
    """Refuse an output file of another kind, in a missing folder, or one that exists without ``overwrite``."""
    if out is not None:
        path = Path(out)
        if path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise MixzooInputError(f"--out {out!r}: write predictions to a {', '.join(OUTPUT_SUFFIXES)} file.")
        if path.exists() and not overwrite:
            raise MixzooInputError(f"{out!r} exists; pass --overwrite to replace it, or choose another --out.")
        if not path.parent.is_dir():
            raise MixzooInputError(f"the folder of --out {out!r} does not exist.")


def write_predictions(proba: np.ndarray, out: str | None, *, overwrite: bool = False) -> None:
    """Write the predictions to ``out`` (``.csv``, ``.parquet`` or ``.npy``), or as CSV to stdout."""
    names, cluster, confidence = _table(proba)
    check_output(out, overwrite)
    if out is not None and out.lower().endswith(".npy"):
        np.save(out, np.column_stack([cluster, confidence, proba]))
        return
    if out is not None and out.lower().endswith(".parquet"):
        try:
            import pandas as pd

            frame = pd.DataFrame(np.column_stack([confidence, proba]), columns=names[1:])
            frame.insert(0, "cluster", cluster)
            frame.to_parquet(out, index=False)
        except ImportError:
            raise MixzooInputError('writing .parquet needs pandas and pyarrow: pip install "mixzoo[parquet]".') from None
        return
    handle = open(out, "w", encoding="utf-8") if out is not None else sys.stdout  # noqa: SIM115
    try:
        handle.write(",".join(names) + "\n")
        for k, conf, row in zip(cluster, confidence, proba, strict=True):
            handle.write(f"{k},{conf:.6g}," + ",".join(f"{p:.6g}" for p in row) + "\n")
    finally:
        if out is not None:
            handle.close()
