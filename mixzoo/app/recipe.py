"""Run a family's recipe on a data set from Python: what ``mixzoo fit`` does, as one function.

>>> run = mixzoo.run("gmm", data="digits")                                   # doctest: +SKIP
>>> run.metrics["acc"], run.record["expected_misclassified"]                  # doctest: +SKIP
>>> run = mixzoo.run("flow-mixture", data="two-circles", guide="encoder", loss="vimco", epochs=20)  # doctest: +SKIP
>>> mixzoo.cluster_proba(run.model, run.guide, run.data.x)                    # doctest: +SKIP

Every keyword is a flag of ``mixzoo fit`` (``--batch-size`` is ``batch_size``); the options of the family, the guide
and the loss go in ``options``, ``guide_options`` and ``loss_options``. The family's plan adapts them to the data,
exactly as on the command line, and ``out`` writes the same run directory.
"""

from __future__ import annotations

from typing import Any

from ..errors import MixzooInputError
from .config import FitConfig, family_of
from .runs import Run, execute

__all__ = ["run", "inference_table"]


def run(
    model: str | type = "gmm",
    data: str = "digits",
    *,
    out: str | None = None,
    overwrite: bool = False,
    progress: bool = False,
    **settings: Any,
) -> Run:
    """Fit a family (or your own model class) to a data set with its recipe, and return the :class:`Run`.

    :param model: a family's name (``mixzoo models``), ``FILE.py:CLASS``, ``module:CLASS`` or a model class.
    :param data: a built-in data set (``digits``, ``pinwheel``, ...) or a file (``.csv``, ``.npy``, ``.npz``, ...).
    :param out: a run directory to write (checkpoint, config, metrics, summary, plots), as ``--out``.
    :param overwrite: replace an existing run in ``out``.
    :param progress: report progress while training.
    :param settings: :class:`~mixzoo.app.config.FitConfig` fields: ``guide``, ``loss``, ``clusters``, ``epochs``,
        ``batch_size``, ``lr``, ``seed``, ``options``, ``guide_options``, ``loss_options``, ``pca``, ``subsample``,
        ``data_dir``, ``labels``, ``n_init``, ``device``, ...
    :raises MixzooInputError: for an unknown setting or a bad value, before any data are read.
    """
    unknown = sorted(set(settings) - set(FitConfig.__dataclass_fields__) - {"model", "data"})
    if unknown:
        raise MixzooInputError(f"mixzoo.run() got unknown setting(s) {', '.join(unknown)}; see mixzoo.FitConfig for the settings.")
    return execute(FitConfig(model=model, data=data, **settings), out=out, overwrite=overwrite, progress=progress)


def inference_table(model: str | type) -> dict[str, dict[str, str | None]]:
    """Which guide trains a model under which loss: ``table[guide][loss]`` is ``None`` where the pair serves the
    model, else the reason it cannot, derived from what the model class declares (:mod:`mixzoo.contract`).

    :param model: a family's name, ``FILE.py:CLASS``, ``module:CLASS`` or a model class.
    """
    return family_of(model).inference_table()
