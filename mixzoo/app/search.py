r"""The search behind :func:`~mixzoo.app.selection.select_clusters`: choosing the number of clusters K, and the model's structure, as model-based clustering does.

:func:`select_clusters` fits the model for every candidate K and, for a family with a structural option (the
Gaussian mixture's covariance structure, the Student-t mixture's scales), for every value of it, and ranks the fits by
one of :data:`~mixzoo.models.family.CRITERIA`, reporting the others beside it, as R's mclust searches K = 1..9 over its
covariance parametrizations by BIC (Fraley and Raftery 2002; Scrucca et al. 2016):

- **BIC** :math:`= -2 \log \hat L + p \log N` on all the data, lower is better (the default where the model counts its
  parameters);
- **ICL** :math:`= \mathrm{BIC} + 2 \sum_n \sum_k -r_{nk} \log r_{nk}`, which also charges a clustering for the
  uncertainty of its assignments and so prefers well separated clusters (Biernacki, Celeux and Govaert 2000);
- **held-out log-likelihood**: a fit on a seeded training split, the mean log-likelihood of the other points;
- **LOO**: ArviZ's PSIS-LOO expected log predictive density of the fit on all the data (see
  :mod:`mixzoo.analysis.summary` for how a point estimate gets its draws).

Each fit is :class:`~mixzoo.app.estimator.MixtureClusterer`'s, with the family's plan for the data (its rescaling,
principal components, its start), so log-likelihoods are in the data's own units. A family without an exact
likelihood offers fewer criteria (:attr:`~mixzoo.models.family.Family.criteria`) and says why.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data.validation import check_data, check_n_clusters
from ..errors import MixzooInputError
from ..models.family import CRITERIA, Family

__all__ = [
    "parse_clusters",
    "split_holdout",
    "search_clusters",
    "SelectionRow",
    "Selection",
    "AUTO_CLUSTERS",
    "family_for_selection",
]

AUTO_CLUSTERS = tuple(range(1, 10))
"""The candidates of ``--clusters auto`` and ``n_clusters="auto"``: K = 1..9, mclust's default range."""

LOWER_IS_BETTER = {"bic": True, "icl": True, "heldout": False, "loo": False}


def parse_clusters(text: str) -> list[int]:
    """Parse ``"1..9"``, ``"2,4,8"`` or a mix (``"1..4,8"``) into sorted distinct K values (at least two)."""
    values: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)\.\.(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise MixzooInputError(f"--clusters range {part!r} runs backwards; write LOW..HIGH, e.g. 1..9.")
            values.update(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            values.add(int(part))
        else:
            raise MixzooInputError(
                f"--clusters {text!r} is not understood; write a range LOW..HIGH (1..9) or a list (2,4,8)."
            )
    ks = sorted(values)
    for k in ks:
        check_n_clusters(k)
    if len(ks) < 2:
        raise MixzooInputError(f"--clusters {text!r} gives one candidate; give at least two, e.g. 1..9.")
    return ks


def split_holdout(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded indices ``(train, held_out)`` with ``round(fraction * n)`` held-out points (at least one)."""
    if not 0 < fraction < 1:
        raise MixzooInputError(f"held-out fraction must lie in (0, 1), got {fraction}.")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


@dataclass
class SelectionRow:
    """One candidate: K and the structure's option (``{}`` for a family without one)."""

    clusters: int
    options: dict[str, Any]
    loglik: float | None = None
    """Mean log-likelihood per point of the fit on all the data."""
    bic: float | None = None
    icl: float | None = None
    heldout_loglik: float | None = None
    elpd_loo: float | None = None
    p_loo: float | None = None
    seconds: float = 0.0
    error: str | None = None

    def value(self, criterion: str) -> float | None:
        v = {"bic": self.bic, "icl": self.icl, "heldout": self.heldout_loglik, "loo": self.elpd_loo}[criterion]
        return v if v is not None and math.isfinite(v) else None


@dataclass
class Selection:
    """The table, the criterion it is ranked by, and the choice of each criterion."""

    rows: list[SelectionRow] = field(default_factory=list)
    criterion: str = "bic"
    choices: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    """``{criterion: (K, options)}``: the best row of every criterion computed."""
    criteria: tuple[str, ...] = CRITERIA
    note: str = ""
    n: int = 0
    n_train: int = 0
    n_heldout: int = 0

    @property
    def choice(self) -> int | None:
        """K chosen by :attr:`criterion`."""
        return self.choices[self.criterion][0] if self.criterion in self.choices else None

    @property
    def choice_options(self) -> dict[str, Any]:
        """The structure chosen with it (e.g. ``{"covariance": "diag"}``)."""
        return dict(self.choices[self.criterion][1]) if self.criterion in self.choices else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "criterion": self.criterion,
            "choice": self.choice,
            "choice_options": self.choice_options,
            "choices": {c: {"clusters": k, "options": o} for c, (k, o) in self.choices.items()},
            "criteria": list(self.criteria),
            "note": self.note,
            "table": [asdict(r) for r in self.rows],
            "n": self.n,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
        }


def family_for_selection(model: str | type) -> Family:
    """The family of ``model`` (a registered name, ``FILE.py:CLASS`` or a model class)."""
    from .config import family_of

    return family_of(model)


def _loo(est: Any, x: np.ndarray, seed: int) -> tuple[float | None, float | None]:
    from ..analysis.arviz_adapter import loo
    from ..analysis.summary import summarize

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = loo(summarize(est.model_, est.guide_, est.model_inputs(x), seed=seed))
    except Exception as err:  # LOO is a diagnostic beside the choice; report and go on
        warnings.warn(f"LOO failed for K={est.n_clusters}: {err}", RuntimeWarning, stacklevel=2)
        return None, None
    shift = 0.0 if est.preprocessing_ is None else est.preprocessing_.log_det_jacobian() * len(x)
    return float(res.elpd_loo) + shift, float(res.p_loo)  # in the data's units, as BIC and the held-out column


def _entropy(proba: np.ndarray) -> float:
    p = np.clip(proba, 1e-300, 1.0)
    return float(-(proba * np.log(p)).sum())


def search_clusters(
    make: Callable[..., Any],
    x: Any,
    clusters: Sequence[int] = AUTO_CLUSTERS,
    *,
    model: str | type = "gmm",
    criterion: str | None = None,
    structures: Sequence[Any] | None = None,
    heldout: float = 0.2,
    seed: int = 0,
    loo: bool = True,
    model_options: dict[str, Any] | None = None,
    **estimator_params: Any,
) -> Selection:
    """Fit ``model`` for every K in ``clusters`` (and every structure) and rank the fits by ``criterion``.

    :param make: the estimator class (:class:`~mixzoo.app.estimator.MixtureClusterer` or a subclass), called with
        ``model``, ``n_clusters``, ``model_options``, ``random_state`` and ``estimator_params``.

    :param x: data (n_samples, n_features), in their own units (the family's plan rescales them).
    :param model: a registered family, ``FILE.py:CLASS`` or a model class of your own.
    :param criterion: ``"bic"``, ``"icl"``, ``"heldout"`` or ``"loo"``; default the family's first (BIC where it
        is offered).
    :param structures: values of the family's structural option to search (the Gaussian mixture's
        ``covariance``); default all of them, or the one ``model_options`` names.
    :param heldout: fraction of points held out (seeded by ``seed``) for the held-out column.
    :param loo: also compute PSIS-LOO (where the family offers it).
    :param model_options: the family's options, held fixed.
    :param estimator_params: further :class:`~mixzoo.app.estimator.MixtureClusterer` parameters (epochs, lr, ...).
    :raises MixzooInputError: for a criterion the family cannot offer, with the reason.
    """
    family = family_for_selection(model)
    offered = tuple(c for c in family.criteria if loo or c != "loo")
    if not family.criteria:
        raise MixzooInputError(f"model {family.name!r} cannot be selected: {family.criteria_note}.")
    criterion = criterion or family.criteria[0]
    if criterion not in CRITERIA:
        raise MixzooInputError(f"--criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}.")
    if criterion not in offered:
        why = family.criteria_note or ("--no-loo was given" if criterion == "loo" else "")
        raise MixzooInputError(
            f"model {family.name!r} cannot be ranked by {criterion}: {why}; use --criterion {' or '.join(offered)}."
        )
    estimator_params.pop("calibration", None)
    xt = check_data(x).numpy()
    ks = sorted({check_n_clusters(k, len(xt)) for k in clusters})
    options = dict(model_options or {})
    if structures is None:
        structures = [options[family.structure]] if family.structure in options else list(family.structures()) or [None]
    train, val = split_holdout(len(xt), heldout, seed) if "heldout" in offered else (np.arange(len(xt)), np.arange(0))
    out = Selection(criterion=criterion, criteria=offered, note=family.criteria_note, n=len(xt),
                    n_train=len(train), n_heldout=len(val))  # fmt: skip
    whole = any(c in offered for c in ("bic", "icl", "loo"))
    for structure in structures:
        chosen = {} if structure is None else {family.structure: structure}
        for k in ks:
            start = time.perf_counter()
            row = SelectionRow(clusters=k, options=chosen)
            # ICL charges the model's own posterior; the candidates need no calibrating refit
            params = dict(model=model, n_clusters=k, model_options={**options, **chosen}, random_state=seed,
                          calibration="none")  # fmt: skip
            try:
                if whole:
                    est = make(**params, **estimator_params).fit(xt)
                    row.loglik = est.score(xt)
                    if "bic" in offered:
                        row.bic = est.bic(xt)
                        row.icl = row.bic + 2 * _entropy(est.predict_proba(xt))
                    if "loo" in offered:
                        row.elpd_loo, row.p_loo = _loo(est, xt, seed)
                if "heldout" in offered and k <= len(train):
                    part = make(**params, **estimator_params).fit(xt[train])
                    row.heldout_loglik = part.score(xt[val])
            except MixzooInputError:
                raise
            except Exception as err:  # one failed candidate is a row of the table, not the end of the search
                row.error = f"{type(err).__name__}: {err}"[:200]
            row.seconds = round(time.perf_counter() - start, 3)
            out.rows.append(row)
    for c in offered:
        scored = [r for r in out.rows if r.value(c) is not None]
        if scored:
            best = (min if LOWER_IS_BETTER[c] else max)(scored, key=lambda r: r.value(c))  # type: ignore[arg-type,return-value]
            out.choices[c] = (best.clusters, dict(best.options))
    return out
