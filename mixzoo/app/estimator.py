"""A scikit-learn style facade over any registered model family.

:class:`MixtureClusterer` builds a model/guide pair through the model registry
(:data:`mixzoo.models.family.MODELS`), trains it with :func:`mixzoo.fit` and answers the
usual clustering and density questions (``predict``, ``predict_proba``,
``score_samples``, ``bic``, ...). It works in :class:`sklearn.pipeline.Pipeline`,
with :func:`sklearn.base.clone`, grid search and pickling.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> pipe = make_pipeline(StandardScaler(), MixtureClusterer(n_clusters=3, random_state=0))  # doctest: +SKIP
>>> labels = pipe.fit_predict(X)                                                          # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..analysis.draws import predictive_proba
from ..analysis.posterior import cluster_proba, log_likelihood
from ..data import Dataset
from ..data.mapped import source
from ..data.torch_data import dataset_rows, is_torch_dataset
from ..data.validation import check_columns, check_data, check_n_clusters
from ..errors import MixzooInputError
from ..training.threads import choose_threads, torch_threads
from .calibrate import calibrate
from .config import FitConfig
from .planning import plan_for
from .restarts import fit_restarts
from .sampling import check_sampleable, sample_fit

__all__ = ["MixtureClusterer"]


class MixtureClusterer(ClusterMixin, DensityMixin, BaseEstimator):
    """Cluster with a mixzoo model family, scikit-learn style.

    ``None`` for a training option takes the family's plan for the data (``mixzoo fit --model NAME --help`` shows
    it), the same plan ``mixzoo fit`` applies: on more than 100 features the density families cluster 50 principal
    components, kept in ``preprocessing_`` and applied to new points.

    :param model: registered model name, e.g. ``"gmm"`` (``mixzoo models`` lists them), a user's class as
        ``"path/to/file.py:ClassName"``, or the class itself.
    :param n_clusters: number of clusters K (>= 1), or ``"auto"``: K (and the family's structure, unless
        ``model_options`` names it) chosen first by the family's selection criterion over K = 1..9, kept in
        ``selection_`` (:func:`~mixzoo.app.selection.select_clusters`).
    :param model_options: the family's options, e.g. ``{"covariance": "full"}`` for ``"gmm"``; checked
        by the family's options dataclass (``mixzoo fit --model NAME --help`` lists them).
    :param guide: guide name (default: the family's own), e.g. ``"posterior"`` or ``"encoder"``.
    :param guide_options: the guide's options, e.g. ``{"temperature": 2.0}`` for ``"encoder"``.
    :param loss: loss name (default: the family's own), e.g. ``"em"``, ``"vimco"`` or ``"rws"``.
    :param loss_options: the loss's options, e.g. ``{"particles": 15}`` for ``"vimco"``.
    :param epochs: training epochs.
    :param lr: Adam learning rate.
    :param batch_size: minibatch size.
    :param n_init: restarts; the one with the lowest final loss is kept (the plan's ``restart_rule`` where it
        states one: the neural mixture keeps the most consistent clusters under augmentation).
    :param random_state: int, :class:`numpy.random.RandomState` or ``None`` (not reproducible).
    :param device: ``"cpu"`` or ``"cuda"``.
    :param progress: show a progress bar while training.
    :param tol: stop when the relative change of the epoch loss stays below ``tol`` for 3 epochs (``None``:
        the family's plan, 0: never).
    :param threads: torch threads while training (``None``: 1 for small data, torch's default for large).
    :param calibration: ``"replicate"`` (the default without ``sampler``): ``predict_proba`` reports the
        probabilities divided by the temperature that fits the labels of one refit on a bootstrap replicate
        (:mod:`mixzoo.analysis.calibration`), so that their confidence matches how stable the clusters are;
        ``"none"``: the model's own probabilities (the default with ``sampler``).
    :param sampler: ``"nuts"``: after the fit, sample the posterior of the model's parameters with NUTS
        (:mod:`mixzoo.inference.nuts`; for models that state priors, such as ``"gmm"`` and ``"student-t"``);
        ``predict_proba`` then reports the posterior predictive probabilities over the draws
        (:mod:`mixzoo.analysis.draws`).
    :param chains: NUTS chains (default 4); ``warmup`` and ``draws``: steps per chain (default 300 each).

    Fitted attributes: ``model_``, ``guide_``, ``config_`` (the planned :class:`~mixzoo.app.config.FitConfig`),
    ``preprocessing_`` (what the plan did to the features, or ``None``), ``n_clusters_`` (K, chosen where
    ``n_clusters="auto"``, with ``selection_``), ``n_features_in_``, ``labels_`` (training
    clusters), ``history_`` (the :class:`~mixzoo.training.loop.FitResult` of the kept restart), ``final_loss_``
    (loss per point), ``calibration_`` (the :class:`~mixzoo.analysis.calibration.Calibration`: ``temperature_`` and
    where it came from), with ``sampler`` ``draws_`` (the relabelled
    :class:`~mixzoo.analysis.draws.RelabelledDraws`) and ``sampling_`` (R-hat, ESS, divergences, seconds), ``n_iter_`` (epochs run) and ``converged_`` (training stopped at ``tol``, or the relative change
    of the loss over the last epoch was below ``1e-4``).
    """

    def __init__(
        self,
        model: str | type = "gmm",
        n_clusters: int | str = 8,
        model_options: dict[str, Any] | None = None,
        guide: str | None = None,
        guide_options: dict[str, Any] | None = None,
        loss: str | None = None,
        loss_options: dict[str, Any] | None = None,
        epochs: int | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        n_init: int | None = None,
        random_state: Any = None,
        device: str = "cpu",
        progress: bool = False,
        threads: int | None = None,
        tol: float | None = None,
        calibration: str | None = None,
        sampler: str | None = None,
        chains: int | None = None,
        warmup: int | None = None,
        draws: int | None = None,
    ) -> None:
        self.model = model
        self.n_clusters = n_clusters
        self.model_options = model_options
        self.guide = guide
        self.guide_options = guide_options
        self.loss = loss
        self.loss_options = loss_options
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_init = n_init
        self.random_state = random_state
        self.device = device
        self.progress = progress
        self.threads = threads
        self.tol = tol
        self.calibration = calibration
        self.sampler = sampler
        self.chains = chains
        self.warmup = warmup
        self.draws = draws

    def _config(self) -> FitConfig:
        for name in ("model_options", "guide_options", "loss_options"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, dict):
                raise MixzooInputError(f"{name} must be a dict of options, got {value!r}.")
        return FitConfig(
            model=self.model,
            data="X",
            guide=self.guide,
            loss=self.loss,
            clusters=self._k if self.n_clusters == "auto" else check_n_clusters(self.n_clusters),
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            n_init=self.n_init,
            device=self.device,
            options=dict(self._options if self.n_clusters == "auto" else self.model_options or {}),
            guide_options=dict(self.guide_options or {}),
            loss_options=dict(self.loss_options or {}),
            threads=self.threads,
            tol=self.tol,
            calibration=self.calibration,
            sampler=self.sampler,
            chains=self.chains,
            warmup=self.warmup,
            draws=self.draws,
        ).resolved()

    def _validate(self, X: Any, reset: bool) -> torch.Tensor:
        """``X`` (NumPy, pandas, lists or tensors on any device) as a checked float tensor on the CPU.

        scikit-learn's own messages (e.g. for a feature count other than the fitted one) are kept, raised as
        :class:`~mixzoo.errors.MixzooInputError`.
        """
        if is_torch_dataset(X):  # read once into one array (a scratch file when large)
            X = dataset_rows(X, name="X")
        if isinstance(X, torch.Tensor):  # any device: the estimator computes on its own
            X = X.detach().cpu().numpy()
        check_columns(X, name="X")
        try:
            arr = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32], ensure_all_finite=False)
        except ValueError as err:
            if isinstance(err, MixzooInputError):
                raise
            if "could not convert" in str(err):
                raise MixzooInputError(f"X is not numeric ({err}); pass a 2-D array of numbers.") from None
            raise MixzooInputError(str(err)) from None
        return check_data(arr, name="X")

    def _inputs(self, X: Any) -> torch.Tensor:
        """New points as the fitted model sees them (the plan's preprocessing applied)."""
        x = self._validate(X, reset=False)
        if self.preprocessing_ is not None:
            x = torch.as_tensor(self.preprocessing_.apply(x.numpy()))
        return x

    def model_inputs(self, X: Any) -> torch.Tensor:
        """``X`` as the fitted ``model_`` sees it: the plan's preprocessing (the common scale of the features,
        dequantization, principal components) applied, as a float tensor. Pass this, not ``X``, to functions that
        take ``model_`` and ``guide_`` (:func:`mixzoo.summarize`, :func:`mixzoo.cluster_proba`)."""
        check_is_fitted(self)
        return self._inputs(X)

    def fit(self, X: Any, y: Any = None) -> MixtureClusterer:
        """Train on ``X`` (n_samples, n_features): an array, a table, a tensor, a NumPy memmap (float32 data read in
        place, other dtypes converted in memory) or a map-style :class:`torch.utils.data.Dataset` (read once into one
        array); ``y`` is ignored.

        :raises MixzooInputError: (a ``ValueError``) on bad data or options.
        """
        x = self._validate(X, reset=True)
        if x.shape[0] < 2:
            raise MixzooInputError(
                f"n_samples={x.shape[0]} is too few; a mixture needs at least 2 points (and n_clusters of them)."
            )
        self.selection_ = None
        if self.n_clusters == "auto":
            self._choose(x)
        k = self._k if self.n_clusters == "auto" else check_n_clusters(self.n_clusters)
        if x.shape[0] < k:
            raise MixzooInputError(
                f"n_samples={x.shape[0]} is fewer than n_clusters={k}; lower n_clusters or pass more data."
            )
        mapped = source(x)  # a memory-mapped file stays one: preprocessing reads it a block at a time
        c, data, plan = plan_for(self._config(), Dataset("X", x.numpy() if mapped is None else mapped, None, None))
        check_sampleable(c)
        x = check_data(data.x, name="X")
        rng = check_random_state(self.random_state)
        loss = c.algorithm.loss(c.loss_opts())
        seeds = [int(rng.randint(np.iinfo(np.int32).max)) for _ in range(c.n_init)]  # type: ignore[arg-type]
        with torch_threads(choose_threads(c.threads, int(x.shape[0]), int(x.shape[1]), int(c.clusters))):  # type: ignore[arg-type]
            best = fit_restarts(c, plan, x, seeds, loss=loss, progress=self.progress)
            self.final_loss_, self.model_, self.guide_, self.history_ = best
            self.calibration_ = calibrate(
                c, plan, self.model_, self.guide_, x, make_loss=lambda: c.algorithm.loss(c.loss_opts()),
                seed=int(rng.randint(np.iinfo(np.int32).max - c.n_init)),  # type: ignore[operator]
            )
            self.draws_, self.sampling_ = (
                sample_fit(c, self.model_, self.guide_, x, torch.get_num_threads(), report=False) if c.sampler else (None, {})
            )
        self.temperature_ = self.calibration_.temperature
        self.config_, self.preprocessing_ = c, data.preprocessing
        self.n_clusters_ = int(c.clusters)  # type: ignore[arg-type]
        losses = self.history_.losses
        self.n_iter_ = self.history_.epochs
        self.converged_ = self.history_.converged or (
            len(losses) > 1 and abs(losses[-1] - losses[-2]) <= 1e-4 * max(1.0, abs(losses[-1]))
        )
        self.labels_ = self._proba(x).argmax(axis=1)
        return self

    def _choose(self, x: torch.Tensor) -> None:
        """``n_clusters="auto"``: K, and the structure unless ``model_options`` names it, by the family's first
        criterion over K = 1..9 (:func:`~mixzoo.app.selection.select_clusters`); kept in ``selection_``."""
        from .search import AUTO_CLUSTERS, search_clusters

        params = {name: getattr(self, name) for name in ("guide", "loss", "epochs", "lr", "batch_size", "tol", "device")}
        self.selection_ = search_clusters(
            type(self),
            x.numpy(), [k for k in AUTO_CLUSTERS if k <= len(x)], model=self.model, loo=False,
            seed=int(check_random_state(self.random_state).randint(2**31 - 1)), model_options=dict(self.model_options or {}),
            **{k: v for k, v in params.items() if v is not None},
        )  # fmt: skip
        self._k = int(self.selection_.choice)
        self._options = {**(self.model_options or {}), **self.selection_.choice_options}

    def _device(self) -> torch.device:
        return next(self.model_.parameters()).device

    def _proba(self, x: torch.Tensor) -> np.ndarray:
        if self.draws_ is not None:
            return predictive_proba(self.model_, self.draws_, x.cpu())
        return cluster_proba(self.model_, self.guide_, x.to(self._device()), temperature=self.temperature_).cpu().double().numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Cluster probabilities (n_samples, n_clusters): exact posterior, or q(y|x) for amortized guides."""
        check_is_fitted(self)
        return self._proba(self._inputs(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable cluster of each sample."""
        return self.predict_proba(X).argmax(axis=1)

    def score_samples(self, X: Any) -> np.ndarray:
        """Per-sample log-likelihood :math:`\\log p(x_n)` with the cluster summed out, in the units of ``X`` (the
        rescaling the plan applied is accounted for; after principal components, the density of the components)."""
        check_is_fitted(self)
        x = self._inputs(X).to(self._device())
        ll = log_likelihood(self.model_, self.guide_, x).cpu().double().numpy()
        return ll + (0.0 if self.preprocessing_ is None else self.preprocessing_.log_det_jacobian())

    def score(self, X: Any, y: Any = None) -> float:
        """Mean per-sample log-likelihood of ``X``; ``y`` is ignored."""
        return float(self.score_samples(X).mean())

    def _n_parameters(self) -> int:
        if not hasattr(self.model_, "n_parameters"):
            raise NotImplementedError(
                f"model {self.model!r} does not report its number of free parameters (n_parameters()); "
                "BIC/AIC are not defined for it. Compare models with score() on held-out data instead."
            )
        return int(self.model_.n_parameters())

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        check_is_fitted(self)
        ll = self.score_samples(X)
        return float(-2 * ll.sum() + self._n_parameters() * math.log(len(ll)))

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        check_is_fitted(self)
        return float(-2 * self.score_samples(X).sum() + 2 * self._n_parameters())

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_samples`` points from the fitted model, in the units of the training data; returns ``(X,
        clusters)``."""
        check_is_fitted(self)
        if not hasattr(self.model_, "sample"):
            raise NotImplementedError(f"model {self.model!r} has no sample(n) method.")
        if not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise MixzooInputError(f"n_samples must be a positive integer, got {n_samples!r}.")
        gen = torch.Generator().manual_seed(int(check_random_state(self.random_state).randint(2**31 - 1)))
        x, k = self.model_.sample(int(n_samples), generator=gen)
        x = x.cpu().double().numpy()
        return (x if self.preprocessing_ is None else self.preprocessing_.invert(x)), k.cpu().numpy()
