"""The one place that knows which ArviZ is installed.

mixzoo supports two ArviZ lines:

* **0.x** (0.20 to 0.23; the newest for Python 3.11): data is ``arviz.InferenceData``;
  ``az.loo`` returns a pandas-Series-like ``ELPDData`` with ``elpd_loo``, ``p_loo``, ``se``;
  ``az.compare`` has columns ``elpd_loo``, ``p_loo``, ``elpd_diff`` (best minus model, so
  ``>= 0``), ``weight``, ``se``, ``dse``, ``warning``; ArviZ itself depends on h5netcdf and h5py.
* **1.x** (Python >= 3.12): data is ``xarray.DataTree``; ``az.loo`` returns an
  ``ELPDDataLOO`` object whose fields are ``elpd``, ``p``, ``se`` (no ``elpd_loo``);
  ``az.compare`` has columns ``elpd``, ``p``, ``elpd_diff`` (model minus reference, so
  ``<= 0``), ``weight``, ``se``, ``dse``, ``diag_elpd`` and rounds its numbers unless told
  not to; ArviZ brings no netCDF engine (mixzoo declares h5netcdf and h5py itself).

Everything else in mixzoo (and its tests) goes through the functions here, which take
and return the same things on both lines: :func:`to_arviz`, :func:`loo` (a
:class:`LooResult` of plain numbers), :func:`compare` (a DataFrame with the 0.x column
names and sign), :func:`save` and :func:`load` (netCDF through h5netcdf).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = [
    "ArvizData",
    "LooResult",
    "MIN_LOO_DRAWS",
    "convergence",
    "NETCDF_ENGINE",
    "arviz_major",
    "compare",
    "load",
    "loo",
    "save",
    "to_arviz",
]

ArvizData = Any
"""``arviz.InferenceData`` (ArviZ 0.x) or ``xarray.DataTree`` (ArviZ 1.x)."""

NETCDF_ENGINE = "h5netcdf"
"""The netCDF engine summaries are written and read with, on both ArviZ lines (a dependency of mixzoo)."""

MIN_LOO_DRAWS = 30
"""Fewest draws that give Pareto k diagnostics on ArviZ 1.x (its PSIS tail is 20% of the draws and
needs 6 of them; under 25 draws it refuses, from 25 to 29 it returns k = NaN). 0.x takes fewer,
returning k = inf with ``warning`` set; :func:`loo` raises ``ValueError`` on 1.x instead."""

COMPARE_COLUMNS = ["rank", "elpd_loo", "p_loo", "elpd_diff", "weight", "se", "dse", "warning"]


def arviz_major() -> int:
    """The major version of the installed ArviZ (0 or 1)."""
    import arviz as az

    return int(str(az.__version__).split(".")[0])


def to_arviz(
    groups: Mapping[str, Mapping[str, np.ndarray]],
    dims: Mapping[str, Sequence[str]],
    coords: Mapping[str, Sequence[Any]] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> ArvizData:
    """Build ArviZ data from ``{group: {variable: array}}``.

    :param dims: dimension names of each variable, keyed ``"group/variable"`` or ``"variable"``.
    :param coords: coordinate values of named dimensions; ``chain`` and ``draw`` default to ranges.
    :param attrs: attributes of the whole data (and of each group).
    :returns: ``arviz.InferenceData`` with ArviZ < 1, else ``xarray.DataTree``.
    """
    coords = dict(coords or {})
    attrs = dict(attrs or {})
    datasets: dict[str, xr.Dataset] = {}
    for group, variables in groups.items():
        data_vars = {}
        for name, value in variables.items():
            vdims = dims.get(f"{group}/{name}", dims.get(name))
            if vdims is None or len(vdims) != np.ndim(value):
                raise ValueError(
                    f"variable {group}/{name} has shape {np.shape(value)} but dims {vdims}; give one name per axis."
                )
            data_vars[name] = (tuple(vdims), np.asarray(value))
        used = {d for _, (vd, _) in data_vars.items() for d in vd}
        ds_coords = {d: coords[d] for d in used if d in coords}
        for d in ("chain", "draw"):
            if d in used and d not in ds_coords:
                size = next(v.shape[vd.index(d)] for vd, v in data_vars.values() if d in vd)
                ds_coords[d] = np.arange(size)
        datasets[group] = xr.Dataset(data_vars, coords=ds_coords, attrs=attrs)
    if arviz_major() < 1:
        import arviz as az

        return az.InferenceData(attrs=attrs, **datasets)
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), **datasets})


@dataclass(frozen=True)
class LooResult:
    """PSIS-LOO of one model, as plain numbers (the same on both ArviZ lines).

    ``elpd_loo`` is the estimated expected log predictive density summed over the
    points (higher is better), ``se`` its standard error, ``p_loo`` the effective number
    of parameters; ``pareto_k_max`` is the largest Pareto shape of the importance
    weights and ``warning`` is ArviZ's flag that some exceed ``good_k``.
    """

    elpd_loo: float
    p_loo: float
    se: float
    pareto_k_max: float
    good_k: float
    warning: bool
    n_samples: int
    n_data_points: int


def _field(res: Any, new: str, old: str) -> Any:
    # ArviZ 1.x ELPDData has attributes elpd/p; 0.x ELPDData is a Series with elpd_loo/p_loo
    return getattr(res, new) if hasattr(res, new) else res[old]


def loo(data: ArvizData, var_name: str | None = None) -> LooResult:
    """PSIS-LOO of ``data`` (its ``log_likelihood`` group; ``var_name`` picks one variable of several).

    ArviZ's own warnings (for example about high Pareto k) pass through; silence them
    around the call where they are expected.
    """
    import arviz as az

    def too_few(detail: str) -> ValueError:
        return ValueError(
            f"too few posterior draws for PSIS-LOO with ArviZ {arviz_major()}.x ({detail}); "
            f"use at least {MIN_LOO_DRAWS} (summarize(..., n_draws={MIN_LOO_DRAWS}) or more)."
        )

    try:
        res = az.loo(data, var_name=var_name)
    except ValueError as err:
        if "n_draws_tail" not in str(err):
            raise
        raise too_few(str(err)) from err
    pareto_k = np.asarray(res.pareto_k, dtype=float)
    if pareto_k.size and np.isnan(pareto_k).all() and int(res["n_samples"]) < MIN_LOO_DRAWS:
        raise too_few(f"{int(res['n_samples'])} draws leave no Pareto k estimate")
    good_k = getattr(res, "good_k", None)
    return LooResult(
        elpd_loo=float(_field(res, "elpd", "elpd_loo")),
        p_loo=float(_field(res, "p", "p_loo")),
        se=float(res["se"]),
        pareto_k_max=float(np.nanmax(pareto_k)) if pareto_k.size else float("nan"),
        good_k=float(good_k) if good_k is not None else 0.7,
        warning=bool(res["warning"]),
        n_samples=int(res["n_samples"]),
        n_data_points=int(res["n_data_points"]),
    )


def convergence(data: ArvizData) -> tuple[float, float]:
    """The largest rank-normalized split R-hat and the smallest bulk effective sample size over every entry of the
    ``posterior`` group (``az.rhat`` and ``az.ess``, as :func:`arviz.summary` reports them, unrounded), ignoring
    entries that do not vary (their R-hat is undefined)."""
    import arviz as az

    def values(result: Any) -> np.ndarray:
        ds = result if isinstance(result, xr.Dataset) else result.to_dataset()
        out = [np.ravel(np.asarray(v, dtype=float)) for v in ds.data_vars.values()]
        return np.concatenate(out) if out else np.array([np.nan])

    r_hat, ess = values(az.rhat(data)), values(az.ess(data, method="bulk"))
    finite = np.isfinite(r_hat)
    return (float(r_hat[finite].max()) if finite.any() else float("nan"),
            float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan"))  # fmt: skip


def compare(datasets: Mapping[str, ArvizData], var_name: str | None = None) -> Any:
    """Rank models by PSIS-LOO (``az.compare`` with stacking weights), best first.

    :returns: a pandas DataFrame indexed by the keys of ``datasets`` with the columns
        ``rank`` (0 is best), ``elpd_loo``, ``p_loo``, ``elpd_diff`` (the best model's
        ``elpd_loo`` minus this one's, so ``>= 0``), ``weight``, ``se``, ``dse`` and ``warning``
        (some Pareto k too high), unrounded, on both ArviZ lines.
    """
    import arviz as az

    if arviz_major() < 1:
        table = az.compare(dict(datasets), var_name=var_name)
        warning = table["warning"].astype(bool)
    else:
        table = az.compare(dict(datasets), var_name=var_name, round_to="none")
        table = table.rename(columns={"elpd": "elpd_loo", "p": "p_loo"})
        warning = table["diag_elpd"].astype(str).str.strip() != ""
    out = table.copy()
    out["warning"] = warning
    out["elpd_diff"] = out["elpd_loo"].max() - out["elpd_loo"]
    out = out.sort_values("elpd_loo", ascending=False)
    out["rank"] = np.arange(len(out))
    return out[COMPARE_COLUMNS]


def save(data: ArvizData, path: str | Path) -> Path:
    """Write ArviZ data (either line) to a netCDF file at ``path`` and return the path."""
    p = Path(path)
    data.to_netcdf(str(p), engine=NETCDF_ENGINE)
    return p


def load(path: str | Path) -> ArvizData:
    """Read a netCDF file written by :func:`save` (on either ArviZ line) into memory and close it."""
    import arviz as az

    if arviz_major() < 1:
        with az.rc_context({"data.load": "eager"}):
            return az.from_netcdf(str(path), engine=NETCDF_ENGINE)
    if hasattr(xr, "load_datatree"):
        return xr.load_datatree(str(path), engine=NETCDF_ENGINE)
    with xr.open_datatree(str(path), engine=NETCDF_ENGINE) as tree:  # pragma: no cover - older xarray
        return tree.load()
