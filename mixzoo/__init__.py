"""mixzoo: deep mixture models for clustering, as Pyro model/guide pairs.

>>> import mixzoo
>>> model, guide = mixzoo.GaussianMixture(dim=2, n_clusters=3), mixzoo.EmptyGuide()
>>> result = mixzoo.fit(model, guide, X)                 # doctest: +SKIP
>>> proba = mixzoo.cluster_proba(model, guide, X)        # doctest: +SKIP
"""

from .analysis.metrics import clustering_report
from .analysis.posterior import cluster_log_joint, cluster_log_proba, cluster_proba, log_likelihood
from .analysis.summary import save_summary, summarize
from .app.estimator import MixtureClusterer
from .app.run_dir import load_checkpoint, save_checkpoint
from .app.selection import select_clusters
from .data import load_dataset
from .errors import MixzooInputError, TrainingDivergedError
from .guides import EmptyGuide
from .models import MODELS, GaussianMixture
from .training.loop import FitResult, fit, set_seed

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "set_seed",
    "GaussianMixture",
    "EmptyGuide",
    "MODELS",
    "cluster_proba",
    "cluster_log_proba",
    "cluster_log_joint",
    "log_likelihood",
    "clustering_report",
    "load_dataset",
    "save_checkpoint",
    "load_checkpoint",
    "MixzooInputError",
    "TrainingDivergedError",
    "MixtureClusterer",
    "summarize",
    "save_summary",
    "select_clusters",
]
