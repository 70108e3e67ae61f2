"""mixzoo: deep mixture models for clustering, as Pyro model/guide pairs.

>>> import mixzoo
>>> run = mixzoo.run("gmm", data="digits")                       # a family's recipe, as `mixzoo fit` runs it
>>> model, guide = mixzoo.GaussianMixture(dim=2, n_clusters=3), "posterior"
>>> result = mixzoo.fit(model, guide, X, loss="em")               # doctest: +SKIP
>>> proba = mixzoo.cluster_proba(model, result.guide, X)          # doctest: +SKIP

The public API is what ``__all__`` lists and the documented subpackages export: :mod:`mixzoo.models` (families),
:mod:`mixzoo.guides`, :mod:`mixzoo.inference` (algorithms), :mod:`mixzoo.data`, :mod:`mixzoo.contract` (what a
model declares), :mod:`mixzoo.analysis` (posteriors, metrics, summaries, plots) and :mod:`mixzoo.options`.
"""

from .analysis.metrics import clustering_report
from .analysis.posterior import cluster_log_joint, cluster_log_proba, cluster_proba, log_likelihood
from .analysis.summary import save_summary, summarize
from .app.config import FitConfig
from .app.estimator import MixtureClusterer
from .app.recipe import inference_table, run
from .app.run_dir import load_checkpoint, save_checkpoint
from .app.runs import Run, load_run
from .app.selection import select_clusters
from .app.transfer import TransferData, transfer_split
from .data import load_dataset
from .errors import MixzooInputError, TrainingDivergedError
from .guides import GUIDES, ClusterEncoder, EmptyGuide, PosteriorGuide
from .inference import ALGORITHMS
from .models import GMVAE, MODELS, EnergyMixture, FlowMixture, GaussianMixture, NeuralMixture, StudentTMixture
from .training.loop import FitResult, fit, set_seed

__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitResult",
    "set_seed",
    "run",
    "Run",
    "inference_table",
    "FitConfig",
    "load_run",
    "GaussianMixture",
    "StudentTMixture",
    "FlowMixture",
    "EnergyMixture",
    "NeuralMixture",
    "GMVAE",
    "EmptyGuide",
    "PosteriorGuide",
    "ClusterEncoder",
    "MODELS",
    "GUIDES",
    "ALGORITHMS",
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
    "transfer_split",
    "TransferData",
]
