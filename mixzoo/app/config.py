"""The configuration of a fit: names, options and training settings, saved as a run's ``config.json``.

:class:`FitConfig` is what ``mixzoo fit`` builds from its flags, what the estimator and ``select`` build from their
arguments, and what ``--resume``, ``evaluate`` and ``predict`` read back. :meth:`FitConfig.resolved` checks every
name and option, and that the guide and loss can train the model, before any data are read;
:func:`mixzoo.app.planning.plan_for` applies the family's plan once the data are known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..analysis.calibration import CALIBRATIONS
from ..data.datasets import scale_mode
from ..data.shape import DataShape
from ..data.validation import check_device, check_n_clusters
from ..errors import MixzooInputError
from ..guides.registry import GuideSpec, get_guide
from ..inference.nuts import NUTS_DEFAULTS, SAMPLERS, nuts_refusal
from ..inference.registry import Algorithm, get_algorithm
from ..models import get_family
from ..models.family import Family, Inference
from ..options import Options
from .transfer import CLASSIFIERS
from .user_model import is_user_model, user_family

__all__ = ["FitConfig", "config_from_json", "family_of", "TRAINING_FIELDS"]

TRAINING_FIELDS = ("epochs", "lr", "lr_decay", "batch_size", "n_init", "tol")
"""The settings a family's plan fills when they are not given."""


def family_of(model: str | type) -> Family:
    """The registered family ``model``, or the user's class (``FILE.py:CLASS``, ``module:CLASS`` or the class)."""
    if isinstance(model, type):
        return user_family(model)
    return user_family(model) if is_user_model(model) else get_family(model)


@dataclass
class FitConfig:
    """Everything that defines a fit; saved as the run's ``config.json``.

    ``options``, ``guide_options`` and ``loss_options`` hold the options of the family, the guide and the loss that
    were given (and the family's that its plan chose for the data); every other option takes its default. ``None``
    for a training setting means the family's plan.
    """

    model: str | type = "gmm"
    """A registered family, ``FILE.py:CLASS`` or ``module:CLASS``; in Python also a model class."""
    data: str = "digits"
    guide: str | None = None
    loss: str | None = None
    clusters: int | str | None = None
    """K; ``"auto"``: chosen first by :func:`~mixzoo.app.selection.select_clusters` over K = 1..9 (and the family's
    structure, unless given), by the family's first criterion; ``None``: the data's number of classes."""
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_decay: float | None = None
    pca: int | None = None
    """Principal components to keep; ``None``: the family's plan, 0: every feature."""
    scale: str | None = None
    """How the features are rescaled before the fit (:data:`mixzoo.data.SCALES`): ``"features"`` standardises each
    one, ``"common"`` divides them all by one spread, ``"none"`` keeps them; ``None``: the family's plan (each feature
    standardised for a table, one common spread for images and data on a grid of levels, whose features share a unit;
    ``"none"`` for a user's model, for data the plan dequantizes and for a transfer classifier's features).
    ``True``/``False`` mean ``"features"``/``"none"``."""
    dequantize: bool | None = None
    """Quantized data (integer images, a file of integers): each level v becomes (v + U[0, 1)) / levels, seeded (Li
    et al. 2020's preprocessing); ``None``: the family's plan (the density families dequantize)."""
    subsample: int | None = None
    n_init: int | None = None
    tol: float | None = None
    """Stop when the relative change of the epoch loss stays below this for 3 epochs (0: never stop early)."""
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    label_column: str | None = None
    """A data table's column of labels, used for evaluation only."""
    columns: list[str] | None = None
    """A data table's feature columns (default: every numeric column but the labels)."""
    options: dict[str, Any] = field(default_factory=dict)
    guide_options: dict[str, Any] = field(default_factory=dict)
    loss_options: dict[str, Any] = field(default_factory=dict)
    pretrain_classes: str | None = None
    """Deep transfer (Matsuda and Hyvärinen 2019): train a classifier on these classes (e.g. "0,1,2,3,4"),
    cluster the others on its last hidden layer; with the NCE loss its training data are the noise."""
    cluster_classes: str | None = None
    """Deep transfer: the held-out classes to cluster (e.g. "5,6"; default: all not in ``pretrain_classes``)."""
    classifier_epochs: int | None = None
    """Training epochs of the transfer classifier (5 when ``pretrain_classes`` is set)."""
    classifier: str | None = None
    """Deep transfer: the classifier whose last hidden layer gives the features, ``"mlp"`` or ``"cnn"`` (conv blocks
    with max-pooling, for images); ``None``: :func:`mixzoo.app.transfer.default_classifier` for the data, and the run
    records the one it used."""
    labels: int | None = None
    """Reveal this many true labels (balanced over classes, seeded) for semi-supervised training."""
    calibration: str | None = None
    """How the reported cluster probabilities are made honest (:data:`mixzoo.analysis.calibration.CALIBRATIONS`):
    ``"replicate"``, a temperature fitted to a refit on a bootstrap replicate (to the revealed labels with
    ``labels``); ``"none"``: the fit's own probabilities (or, with ``sampler``, the posterior predictive ones).
    ``None``: ``"replicate"``, or ``"none"`` with ``sampler``."""
    sampler: str | None = None
    """``"nuts"``: after the fit, sample the posterior of the model's parameters with NUTS
    (:mod:`mixzoo.inference.nuts`) and report the posterior predictive cluster probabilities
    (:mod:`mixzoo.analysis.draws`); ``None``: the fit's point estimate."""
    chains: int | None = None
    """NUTS chains (with ``sampler``; default :data:`~mixzoo.inference.nuts.NUTS_DEFAULTS`)."""
    warmup: int | None = None
    """NUTS warm-up steps per chain (with ``sampler``)."""
    draws: int | None = None
    """NUTS draws kept per chain (with ``sampler``)."""
    dim: int | None = None
    """Features of the data the model trains on (recorded by the plan)."""
    n: int | None = None
    """Points of the data the model trains on (recorded by the plan)."""
    image_shape: list[int] | None = None
    """Image shape of the data the model trains on, ``None`` when they are not an image (recorded by the plan)."""
    checkpoint_every: int | None = None
    """Write a resumable training state into the run directory every this many epochs."""
    retries: int = 0
    """Retry a diverged epoch with half the learning rate at most this many times."""
    threads: int | None = None
    """torch threads while training (``None``: 1 for small work, torch's default above; see :mod:`mixzoo.training.threads`)."""
    model_file_sha256: str | None = None
    """For a user's model file: the SHA-256 of the file that made the run."""

    @property
    def family(self) -> Family:
        return family_of(self.model)

    @property
    def guide_spec(self) -> GuideSpec:
        return get_guide(self.guide or self.family.default_guide)

    @property
    def algorithm(self) -> Algorithm:
        return get_algorithm(self.loss or self.family.default_loss)

    def family_options(self) -> Options:
        """The family's options: the given ones over the defaults, checked."""
        return self.family.make_options(self.options)

    def guide_opts(self) -> Options:
        """The guide's options: the given ones over the defaults, checked."""
        return self.guide_spec.make_options(self.guide_options)

    def loss_opts(self) -> Options:
        """The loss's options: the given ones over the defaults, checked."""
        return self.algorithm.options.from_dict(self.loss_options)

    def inference(self) -> Inference:
        """What the family's plan may know of the chosen inference."""
        return Inference(
            guide=self.guide or self.family.default_guide,
            loss=self.loss or self.family.default_loss,
            closed_form=self.algorithm.closed_form(self.family.capabilities),
            given=frozenset(self.options),
        )

    def data_shape(self) -> DataShape:
        """The shape the plan recorded (for rebuilding a run's pair)."""
        assert self.dim is not None
        return DataShape(self.n or 0, self.dim, None if self.image_shape is None else tuple(self.image_shape))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (a model class given in Python is named ``module:Class``)."""
        d = asdict(self)
        if isinstance(self.model, type):
            d["model"] = f"{self.model.__module__}:{self.model.__qualname__}"
        return d

    def resolved(self) -> FitConfig:
        """Fill the family's guide and loss, check every name and option, and that the guide and loss can train the
        model, before any data are read."""
        family = self.family
        c = FitConfig(**asdict(self))
        c.guide = c.guide or family.default_guide
        c.loss = c.loss or family.default_loss
        family.check(c.guide, c.loss)  # names, and the capabilities the guide and the loss need
        algorithm = c.algorithm
        if algorithm.closed_form(family.capabilities):
            given = [
                flag for flag, value in (("--lr", c.lr), ("--lr-decay", c.lr_decay), ("--retries", c.retries)) if value
            ]
            if given:
                raise MixzooInputError(
                    f"{', '.join(given)} cannot apply to loss {c.loss!r} of model {c.model!r}: it sets the parameters "
                    "in closed form, with no learning rate (use --loss trace-enum for gradient training)."
                )
        _check_sampler(c, family)
        if c.calibration is None:
            c.calibration = "none" if c.sampler else "replicate"
        if c.calibration not in CALIBRATIONS:
            raise MixzooInputError(f"--calibration must be one of {', '.join(CALIBRATIONS)}, got {c.calibration!r}.")
        if c.labels and not algorithm.takes_labels:
            raise MixzooInputError(f"--labels cannot apply to loss {c.loss!r}: it does not observe cluster labels.")
        options = c.family_options()
        options.refuse_inapplicable(frozenset(c.options), c.guide, c.loss, before_data=True)
        c.options = {k: v for k, v in options.to_dict().items() if k in c.options}  # checked values, JSON-ready
        guide_options = c.guide_opts()
        c.guide_options = {k: v for k, v in guide_options.to_dict().items() if k in c.guide_options}
        loss_options = c.loss_opts()
        c.loss_options = {k: v for k, v in loss_options.to_dict().items() if k in c.loss_options}
        if c.scale is not None:
            c.scale = scale_mode(c.scale)
        _check_settings(c)
        return c


def _positive_int(value: Any, flag: str, low: int = 1) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        raise MixzooInputError(f"{flag} must be an integer of at least {low}, got {value!r}.")


def _check_sampler(c: FitConfig, family: Family) -> None:
    """``--sampler`` and its settings: a known sampler, a model it can sample (its class, before any data are read),
    no setting that cannot apply; fills the defaults of :data:`~mixzoo.inference.nuts.NUTS_DEFAULTS`."""
    settings = {"chains": c.chains, "warmup": c.warmup, "draws": c.draws}
    if c.sampler is None:
        given = [f"--{k}" for k, v in settings.items() if v is not None]
        if given:
            raise MixzooInputError(f"{', '.join(given)} cannot apply without --sampler nuts: they set its chains.")
        return
    if c.sampler not in SAMPLERS:
        raise MixzooInputError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {c.sampler!r}.")
    why = nuts_refusal(family.model)
    if why is not None:
        raise MixzooInputError(f"--sampler nuts cannot apply to model {family.name!r}: {why}.")
    if c.calibration == "replicate":
        raise MixzooInputError(
            "--calibration replicate cannot apply with --sampler nuts: the posterior predictive probabilities over "
            "the draws already carry the parameters' uncertainty; drop --calibration."
        )
    if c.labels:
        raise MixzooInputError("--labels cannot apply with --sampler nuts: it samples the posterior of the unlabelled model.")
    for name, value in settings.items():
        _positive_int(value, f"--{name}")
        if value is None:
            setattr(c, name, NUTS_DEFAULTS[name])


def _check_settings(c: FitConfig) -> None:
    _positive_int(c.retries, "--retries", 0)
    _positive_int(c.n_init, "--n-init")
    _positive_int(c.epochs, "--epochs")
    _positive_int(c.batch_size, "--batch-size")
    _positive_int(c.checkpoint_every, "--checkpoint-every")
    _positive_int(c.classifier_epochs, "--classifier-epochs")
    _positive_int(c.labels, "--labels")
    _positive_int(c.pca, "--pca", 0)
    _positive_int(c.threads, "--threads")
    _positive_int(c.subsample, "--subsample", 2)
    if c.tol is not None and (isinstance(c.tol, bool) or not isinstance(c.tol, int | float) or not c.tol >= 0):
        raise MixzooInputError(f"--tol must be a number >= 0, got {c.tol!r}.")
    if c.lr is not None and not c.lr > 0:
        raise MixzooInputError(f"--lr must be positive, got {c.lr!r}.")
    if c.lr_decay is not None and not 0 < c.lr_decay <= 1:
        raise MixzooInputError(f"--lr-decay must lie in (0, 1], got {c.lr_decay!r}.")
    if c.cluster_classes is not None and not c.pretrain_classes:
        raise MixzooInputError(
            "--cluster-classes chooses among the classes the transfer classifier did not see; it needs --pretrain-classes."
        )
    if c.classifier is not None and c.classifier not in CLASSIFIERS:
        raise MixzooInputError(f"--classifier must be one of {', '.join(CLASSIFIERS)}, got {c.classifier!r}.")
    if c.classifier is not None and not c.pretrain_classes:
        raise MixzooInputError("--classifier chooses the transfer classifier; it needs --pretrain-classes.")
    if c.classifier_epochs is not None and not c.pretrain_classes:
        raise MixzooInputError("--classifier-epochs applies to the transfer classifier; it needs --pretrain-classes.")
    if c.clusters == "auto":
        if not c.family.criteria:
            raise MixzooInputError(f"--clusters auto cannot choose K for model {c.family.name!r}: {c.family.criteria_note}.")
    elif c.clusters is not None:
        check_n_clusters(c.clusters)
    check_device(c.device)


_MOVED_TO_ENCODER = ("encoder_hidden", "temperature", "temperature_decay")
"""Flow-mixture options that became the encoder guide's."""


def _migrated(raw: dict[str, Any]) -> dict[str, Any]:
    """A config.json written before guides and losses had options of their own, in today's terms."""
    raw = dict(raw)
    if raw.get("pretrain_classes") and "classifier" not in raw:
        raw["classifier"] = "mlp"  # written before the CNN classifier existed: its features came from the MLP
    particles = raw.pop("particles", None)
    if particles is not None:
        raw["loss_options"] = {**raw.get("loss_options", {}), "particles": particles}
    if isinstance(raw.get("scale"), bool):  # written before the common scale: False kept the data's units
        raw["scale"] = "features" if raw["scale"] else "none"
    if raw.get("guide") == "e-step":
        raw["guide"] = "posterior"
    if raw.get("model") == "gmm" and raw.get("guide") == "empty" and raw.get("loss") == "em":
        raw["guide"] = "posterior"
    options = dict(raw.get("options", {}))
    moved = {k: options.pop(k) for k in _MOVED_TO_ENCODER if k in options}
    if moved:
        raw["options"], raw["guide_options"] = options, {**raw.get("guide_options", {}), **moved}
    return raw


def config_from_json(raw: Any, where: str | Path) -> FitConfig:
    """A :class:`FitConfig` from a run's ``config.json`` (older runs' entries translated); unknown keys are a clear
    error."""
    known = set(FitConfig.__dataclass_fields__)
    raw = _migrated(raw) if isinstance(raw, dict) else raw
    if not isinstance(raw, dict) or not set(raw) <= known:
        extra = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise MixzooInputError(f"{str(where)!r} has a config.json mixzoo cannot read (unknown entries: {extra}).")
    return FitConfig(**raw)
