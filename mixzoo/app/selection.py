"""Choosing the number of clusters K.

:func:`select_clusters` fits one model per candidate K on a seeded training split
and ranks the fits by the mean log-likelihood of the held-out points (the choice)
and, where the pointwise log-likelihood supports it, by ArviZ's PSIS-LOO expected
log predictive density on the training points (reported beside it; see
:mod:`mixzoo.analysis.summary` for how point-estimated models get their draws).
"""

from __future__ import annotations

import math
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..data.validation import check_data, check_n_clusters
from ..errors import MixzooInputError
from .estimator import MixtureClusterer

__all__ = ["parse_clusters", "split_holdout", "select_clusters", "SelectionRow", "Selection"]


def parse_clusters(text: str) -> list[int]:
    """Parse ``"2..12"``, ``"2,4,8"`` or a mix (``"2..4,8"``) into sorted distinct K values (at least two)."""
    values: set[int] = set()
    for part in str(text).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)\.\.(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise MixzooInputError(f"--clusters range {part!r} runs backwards; write LOW..HIGH, e.g. 2..12.")
            values.update(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            values.add(int(part))
        else:
            raise MixzooInputError(
                f"--clusters {text!r} is not understood; write a range LOW..HIGH (2..12) or a list (2,4,8)."
            )
    ks = sorted(values)
    for k in ks:
        check_n_clusters(k)
    if len(ks) < 2:
        raise MixzooInputError(f"--clusters {text!r} gives one candidate; give at least two, e.g. 2..12.")
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
    """One candidate K."""

    clusters: int
    train_loglik: float
    heldout_loglik: float
    elpd_loo: float | None
    p_loo: float | None
    bic: float | None
    seconds: float


@dataclass
class Selection:
    """The table and the choices; ``choice`` maximises the held-out log-likelihood."""

    rows: list[SelectionRow] = field(default_factory=list)
    choice: int | None = None
    choice_loo: int | None = None
    n_train: int = 0
    n_heldout: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": [asdict(r) for r in self.rows],
            "choice": self.choice,
            "choice_loo": self.choice_loo,
            "n_train": self.n_train,
            "n_heldout": self.n_heldout,
        }


def _loo(est: MixtureClusterer, x: np.ndarray, seed: int) -> tuple[float | None, float | None]:
    from ..analysis.arviz_adapter import loo
    from ..analysis.summary import summarize

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = loo(summarize(est.model_, est.guide_, est.model_inputs(x), seed=seed))
    except Exception as err:  # LOO is a diagnostic beside the held-out choice; report and go on
        warnings.warn(f"LOO failed for K={est.n_clusters}: {err}", RuntimeWarning, stacklevel=2)
        return None, None
    return res.elpd_loo, res.p_loo


def select_clusters(
    x: Any,
    clusters: Sequence[int],
    *,
    model: str = "gmm",
    heldout: float = 0.2,
    seed: int = 0,
    loo: bool = True,
    **estimator_params: Any,
) -> Selection:
    """Fit ``model`` for every K in ``clusters`` and rank the fits.

    :param x: data (n_samples, n_features).
    :param heldout: fraction of points held out (seeded by ``seed``).
    :param loo: also compute PSIS-LOO on the training points.
    :param estimator_params: further :class:`~mixzoo.app.estimator.MixtureClusterer` parameters (epochs, lr, ...).
    """
    xt = check_data(x).numpy()
    train, val = split_holdout(len(xt), heldout, seed)
    ks = sorted({check_n_clusters(k, len(train)) for k in clusters})
    out = Selection(n_train=len(train), n_heldout=len(val))
    for k in ks:
        start = time.perf_counter()
        est = MixtureClusterer(model=model, n_clusters=k, random_state=seed, **estimator_params).fit(xt[train])
        elpd, p_loo = _loo(est, xt[train], seed) if loo else (None, None)
        try:
            bic = est.bic(xt[train])
        except NotImplementedError:
            bic = None
        out.rows.append(
            SelectionRow(
                clusters=k,
                train_loglik=est.score(xt[train]),
                heldout_loglik=est.score(xt[val]),
                elpd_loo=elpd,
                p_loo=p_loo,
                bic=bic,
                seconds=round(time.perf_counter() - start, 3),
            )
        )
    finite = [r for r in out.rows if math.isfinite(r.heldout_loglik)]
    out.choice = max(finite, key=lambda r: r.heldout_loglik).clusters if finite else None
    with_loo = [r for r in out.rows if r.elpd_loo is not None and math.isfinite(r.elpd_loo)]
    out.choice_loo = max(with_loo, key=lambda r: r.elpd_loo or -math.inf).clusters if with_loo else None
    return out
