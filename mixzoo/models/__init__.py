"""Model families (one per file) and the registry behind the CLI's model names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import MixzooInputError
from ..guides import ClusterEncoder, EmptyGuide, EStepGuide, GMVAEGuide
from ..inference.annealing import ExponentialDecay, StepDecay
from ..inference.nce import NCE
from .energy_mixture import EnergyMixture
from .flow_mixture import FlowMixture
from .gmm import GaussianMixture
from .gmvae import GMVAE, pretrain_autoencoder
from .neural_mixture import NeuralMixture

__all__ = ["ModelSpec", "MODELS", "get_spec", "GaussianMixture", "FlowMixture", "EnergyMixture", "NeuralMixture"]

Builder = Callable[[int, int, str, dict[str, Any]], tuple[nn.Module, nn.Module]]
ScheduleBuilder = Callable[[nn.Module, nn.Module, dict[str, Any]], list[Callable[[int], None]]]


Initializer = Callable[..., None]
"""``initialize(model, guide, x, seed, options, loss=None)``: the loss that will train the pair comes last."""


def _initialize_each(model: nn.Module, guide: nn.Module, x: Any, seed: int, options: dict[str, Any], loss: Any = None) -> None:
    for module in (model, guide):
        if hasattr(module, "initialize"):
            module.initialize(x, seed=seed)


def _energy_initialize(model: nn.Module, guide: nn.Module, x: Any, seed: int, options: dict[str, Any], loss: Any = None) -> None:
    """Under NCE, start each component at the NCE fit of its k-means cluster against the loss's noise."""
    model.initialize(x, seed=seed, nce=loss if isinstance(loss, NCE) else None)  # type: ignore[operator]


def _no_schedules(model: nn.Module, guide: nn.Module, options: dict[str, Any]) -> list[Callable[[int], None]]:
    return []


def _no_check(options: dict[str, Any]) -> None:
    """Model families without option checks accept every value their builder accepts."""


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
    schedules: ScheduleBuilder = _no_schedules
    """Per-epoch schedules (annealing) for a built pair."""
    initialize: Initializer = _initialize_each
    """Data-dependent initialisation of a built pair before training (called once per restart)."""
    check_options: Callable[[dict[str, Any]], None] = _no_check
    """Refuses bad option values with a clear error, before any data are read."""

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


def _hidden(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.split(",") if v)
    return tuple(int(v) for v in value)


def _build_flow_mixture(dim: int, k: int, guide: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    model = FlowMixture(
        dim,
        k,
        kind=options["flow"],
        transforms=int(options["transforms"]),
        hidden=_hidden(options["hidden"]),
        independent=options["flow"] != "realnvp",
        base=options["base"],
    )
    if guide == "empty":
        return model, EmptyGuide()
    return model, ClusterEncoder(
        dim, k, hidden=_hidden(options["encoder_hidden"]), temperature=float(options["temperature"])
    )


def _flow_mixture_schedules(model: nn.Module, guide: nn.Module, options: dict[str, Any]) -> list[Callable[[int], None]]:
    if not isinstance(guide, ClusterEncoder):
        return []
    return [
        ExponentialDecay(guide, "temperature", float(options["temperature"]), float(options["temperature_decay"]), 1.0)
    ]


def _build_energy_mixture(dim: int, k: int, guide: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    return EnergyMixture(dim, k, features=options["features"]), EmptyGuide()


def _build_neural_mixture(dim: int, k: int, guide: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    model = NeuralMixture(
        dim,
        k,
        arch=options["arch"],
        hidden=_hidden(options["hidden"]),
        channels=_hidden(options["channels"]),
        image_shape=options["image"] or None,
        gamma=float(options["gamma"]),
        normalize=bool(options["normalize"]),
        sobel=bool(options["sobel"]),
        augment=bool(options["augment"]),
    )
    return model, EStepGuide(model)


def _check_gmvae(options: dict[str, Any]) -> None:
    start = options["anneal_start"]
    if isinstance(start, bool) or not isinstance(start, int | float) or not 1e-4 <= start < float("inf"):
        raise MixzooInputError(f"--anneal-start must be a number >= 1e-4 (the paper starts the std floors at 1), got {start!r}.")


def _build_gmvae(dim: int, k: int, guide: str, options: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    _check_gmvae(options)
    hidden = _hidden(options["hidden"])
    latent = int(options["latent"])
    model = GMVAE(dim, k, latent=latent, hidden=hidden, likelihood=options["likelihood"])
    return model, GMVAEGuide(dim, k, latent=latent, hidden=hidden, structured=guide == "qzxy")


def _gmvae_schedules(model: nn.Module, guide: nn.Module, options: dict[str, Any]) -> list[Callable[[int], None]]:
    every, start = int(options["anneal_every"]), float(options["anneal_start"])
    if every <= 0:  # no annealing: the floors stay at their final value
        model.eps_x = guide.eps_z = 1e-4
        return []
    return [StepDecay(model, "eps_x", start, every, 0.5, 1e-4), StepDecay(guide, "eps_z", start, every, 0.5, 1e-4)]


def _gmvae_initialize(model: nn.Module, guide: nn.Module, x: Any, seed: int, options: dict[str, Any], loss: Any = None) -> None:
    if int(options["pretrain"]) > 0:
        pretrain_autoencoder(model, guide, x, epochs=int(options["pretrain"]), seed=seed)


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
    "flow-mixture": ModelSpec(
        name="flow-mixture",
        description="mixture of normalizing flows (NSF/MAF/RealNVP); MLE, y enumerated (003) or encoder q(y|x) (002)",
        build=_build_flow_mixture,
        guides=("empty", "encoder"),
        losses=("trace-enum", "trace-graph", "trace"),
        epochs=250,
        lr=5e-3,
        lr_decay=0.99,
        batch_size=500,
        n_init=1,
        options={
            "flow": "nsf",
            "transforms": 3,
            "hidden": "32,32",
            "base": "kmeans",
            "encoder_hidden": "64,64",
            "temperature": 5.0,
            "temperature_decay": 0.98,
        },
        schedules=_flow_mixture_schedules,
    ),
    "energy-mixture": ModelSpec(
        name="energy-mixture",
        description="non-normalized exponential-family mixture estimated by NCE (000); deep features via --pretrain-classes",
        build=_build_energy_mixture,
        guides=("empty",),
        losses=("nce",),
        epochs=30,
        lr=0.01,
        batch_size=1024,
        options={"features": "linear"},
        initialize=_energy_initialize,
    ),
    "neural-mixture": ModelSpec(
        name="neural-mixture",
        description="neural mixture: sigmoid of batch-normalized relevance scores, trained by batch-wise EM (001)",
        build=_build_neural_mixture,
        guides=("e-step",),
        losses=("em", "trace-enum"),
        epochs=100,
        lr=1e-3,
        batch_size=128,
        options={
            "arch": "mlp",
            "hidden": "32,32",
            "channels": "64,128,256",
            "image": "",
            "gamma": 5.0,
            "normalize": True,
            "sobel": False,
            "augment": False,
            "two_fold": False,
            "consistency_lr": 1e-4,
        },
    ),
    "gmvae": ModelSpec(
        name="gmvae",
        description="Gaussian-mixture VAE with q(z|y,x) (004): VIMCO, enumerated y (EnumY) or NVIL; std annealing",
        build=_build_gmvae,
        guides=("qzxy", "mean-field"),
        losses=("vimco", "trace-enum", "trace-graph"),
        epochs=100,
        lr=1e-3,
        batch_size=128,
        options={
            "latent": 10,
            "hidden": "256,256",
            "likelihood": "gaussian",
            "anneal_every": 10,
            "anneal_start": 1.0,
            "pretrain": 20,
        },
        schedules=_gmvae_schedules,
        initialize=_gmvae_initialize,
        check_options=_check_gmvae,
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The registered :class:`ModelSpec` for ``name``, or a clear error listing the known names."""
    if name not in MODELS:
        raise MixzooInputError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)} (see `mixzoo models`).")
    return MODELS[name]
