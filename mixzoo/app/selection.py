"""Choosing the number of clusters K, and the model's structure, as model-based clustering does.

:func:`select_clusters` fits :class:`~mixzoo.app.estimator.MixtureClusterer` for every candidate K and structure and
ranks the fits by BIC, ICL, held-out log-likelihood or LOO; :mod:`mixzoo.app.search` holds the search itself and
says what each criterion is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .estimator import MixtureClusterer
from .search import (
    AUTO_CLUSTERS,
    Selection,
    SelectionRow,
    family_for_selection,
    parse_clusters,
    search_clusters,
    split_holdout,
)

__all__ = [
    "select_clusters",
    "parse_clusters",
    "split_holdout",
    "SelectionRow",
    "Selection",
    "AUTO_CLUSTERS",
    "family_for_selection",
]


def select_clusters(
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

    :param x: data (n_samples, n_features), in their own units (the family's plan rescales them).
    :param clusters: the candidate K values; default 1..9, as R's mclust.
    :param model: a registered family, ``FILE.py:CLASS`` or a model class of your own.
    :param criterion: ``"bic"``, ``"icl"``, ``"heldout"`` or ``"loo"``; default the family's first (BIC where it
        is offered).
    :param structures: values of the family's structural option to search (the Gaussian mixture's
        ``covariance``); default all of them, or the one ``model_options`` names.
    :param heldout: fraction of points held out (seeded by ``seed``) for the held-out column.
    :param seed: the seed of every fit and of the held-out split.
    :param loo: also compute PSIS-LOO (where the family offers it).
    :param model_options: the family's options, held fixed.
    :param estimator_params: further :class:`~mixzoo.app.estimator.MixtureClusterer` parameters (epochs, lr, ...).
    :raises MixzooInputError: for a criterion the family cannot offer, with the reason.
    """
    return search_clusters(
        MixtureClusterer, x, clusters, model=model, criterion=criterion, structures=structures, heldout=heldout,
        seed=seed, loo=loo, model_options=model_options, **estimator_params,
    )  # fmt: skip
