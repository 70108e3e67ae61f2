"""Model families (one per file) and the registry behind the CLI's model names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import MixzooInputError
from ..guides import EmptyGuide
from .gmm import GaussianMixture

__all__ = ["ModelSpec", "MODELS", "get_spec", "GaussianMixture"]

Builder = Callable[[int, int, str, dict[str, Any]], tuple[nn.Module, nn.Module]]


@dataclass(frozen=True)
class ModelSpec:
    """How the CLI builds a model family: ``build(dim, n_clusters, guide_name, options) -> (model, guide)``."""

    name: str
    description: str
    build: Builder
    guides: tuple[str, ...]
    losses: tuple[str, ...]
    epochs: int = 200
    lr: float = 0.05
    lr_decay: float | None = None
    batch_size: int | None = None
    n_init: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[tuple[str, Any], dict[str, Any]] = field(default_factory=dict)
    """Training defaults that depend on an option, e.g. ``{("covariance", "full"): {"lr": 0.01}}``."""

    def defaults(self, options: dict[str, Any]) -> dict[str, Any]:
        """Training defaults (epochs, lr, lr_decay, batch_size, n_init) for these model options."""
        out = {
            "epochs": self.epochs,
            "lr": self.lr,
            "lr_decay": self.lr_decay,
            "batch_size": self.batch_size,
            "n_init": self.n_init,
        }
        for (key, value), extra in self.overrides.items():
            if options.get(key) == value:
                out.update(extra)
        return out

    @property
    def default_guide(self) -> str:
        return self.guides[0]

    @property
    def default_loss(self) -> str:
        return self.losses[0]


def _build_gmm(dim: int, k: int, guide: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    return GaussianMixture(dim, k, covariance=options.get("covariance", "diag")), EmptyGuide()


MODELS: dict[str, ModelSpec] = {
    "gmm": ModelSpec(
        name="gmm",
        description="Gaussian mixture, diag/full covariance, maximum likelihood with y enumerated",
        build=_build_gmm,
        guides=("empty",),
        losses=("trace-enum",),
        epochs=300,
        lr=0.1,
        lr_decay=0.98,
        batch_size=2048,
        n_init=1,
        options={"covariance": "diag"},
        # Cholesky factors are badly conditioned for Adam at lr 0.1; a smaller step keeps full covariances stable.
        overrides={("covariance", "full"): {"lr": 0.01, "lr_decay": 0.99}},
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The registered :class:`ModelSpec` for ``name``, or a clear error listing the known names."""
    if name not in MODELS:
        raise MixzooInputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (see `mixzoo models`).")
    return MODELS[name]
