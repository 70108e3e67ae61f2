"""A family's plan applied to a configuration and its data: the one place where ``mixzoo fit``, the estimator and
``select`` turn a family's recipe into settings, so their defaults cannot differ.

:func:`planned` asks the family's :attr:`~mixzoo.models.family.Family.plan` for the data's shape, takes the
preprocessing it asks for (principal components, dequantization) unless the user chose otherwise (``--pca``,
``--dequantize``), asks again for the reduced data, refuses options the data made inapplicable, and fills the
settings the user left unset. The configuration then records what was chosen (options, components, the data's
dimension, size and image shape), so that a run rebuilds and resumes exactly. :func:`plan_for` does the same with
the data themselves, and applies the preprocessing.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np

from ..data import Dataset, preprocess, with_levels
from ..data.levels import Levels
from ..data.shape import DataShape
from ..data.validation import check_n_clusters
from ..errors import MixzooInputError
from ..models.family import Plan
from .config import TRAINING_FIELDS, FitConfig
from .user_model import file_digest, is_user_model

__all__ = ["plan_for", "planned", "shape_of"]


def shape_of(data: Dataset, learned_features: bool = False) -> DataShape:
    """What a plan may know of a data set."""
    per_feature = data.levels is not None and np.ndim(data.top) > 0
    return DataShape(int(data.x.shape[0]), int(data.x.shape[1]), data.image_shape, data.levels, learned_features,
                     levels_per_feature=per_feature)  # fmt: skip


def planned(config: FitConfig, shape: DataShape, n_classes: int | None = None) -> tuple[FitConfig, Plan]:
    """The family's plan for data of this shape under a resolved ``config``, and the config with everything it
    chose: ``pca`` or ``dequantize`` where the plan asks for them and the user did not choose, the options the plan
    adapted (the family's and its recipe for the guide), the training settings left unset, and the shape of the data
    the model will see.

    :param n_classes: the data's number of classes, the number of clusters when ``config`` gives none.
    :raises MixzooInputError: where the number of clusters or an option does not fit the data.
    """
    c = replace(config)
    family, options, inference = c.family, c.family_options(), c.inference()
    image = c.options.get("image")
    if image and shape.image_shape is None and int(np.prod(image)) == shape.dim:
        shape = replace(shape, image_shape=tuple(int(v) for v in image))  # the user's --image names the data's shape
    one_unit = shape.image_shape is not None or shape.levels is not None  # pixels, counts: features share a unit
    if c.pca and not c.pretrain_classes:  # the user's --pca: the plan is for the reduced data (a transfer run's
        # --pca reduced the classifier's input, and the plan sees its features)
        if not 1 <= c.pca <= min(shape.n, shape.dim):
            raise MixzooInputError(f"--pca must be between 1 and {min(shape.n, shape.dim)} for this data, got {c.pca}.")
        shape = shape.reduced(c.pca)
    plan = family.plan(options, shape, inference)
    if plan.pca and c.pca is None:
        c.pca = plan.pca
        shape = shape.reduced(plan.pca)
        plan = family.plan(options, shape, inference)
    elif plan.dequantize and c.dequantize is None and shape.levels is not None:
        c.dequantize = True
        shape = replace(shape, levels=None)
    if c.dequantize and shape.levels is not None:
        shape = replace(shape, levels=None)
    c.dequantize = bool(c.dequantize)
    if c.scale is None:
        if not plan.rescale or c.dequantize or c.pretrain_classes:
            c.scale = "none"
        else:
            c.scale = "common" if one_unit else "features"
    if c.clusters is None:
        if n_classes is None:
            raise MixzooInputError(f"data {c.data!r} has no known number of classes; pass --clusters K.")
        c.clusters = n_classes
    check_n_clusters(c.clusters, shape.n)
    given = frozenset(c.options)
    plan.options.refuse_inapplicable(given, c.guide or family.default_guide, c.loss or family.default_loss)
    defaults = family.options().to_dict()
    chosen = {k: v for k, v in plan.options.to_dict().items() if k not in given and v != defaults[k]}
    c.options = {**c.options, **chosen}
    recipe = plan.guide_options.get(c.guide or family.default_guide, {})
    if recipe:
        options = c.guide_spec.make_options({**recipe, **c.guide_options}).to_dict()  # checked, JSON-ready
        c.guide_options = {**c.guide_options, **{k: options[k] for k in recipe if k not in c.guide_options}}
    for name in TRAINING_FIELDS:
        if getattr(c, name) is None:
            setattr(c, name, getattr(plan.training, name))
    c.dim, c.n = shape.dim, shape.n
    c.image_shape = None if shape.image_shape is None else [int(s) for s in shape.image_shape]
    if isinstance(c.model, str) and is_user_model(c.model):
        c.model_file_sha256 = file_digest(c.model)
    return c, plan


def plan_for(config: FitConfig, data: Dataset, *, report: bool = False) -> tuple[FitConfig, Dataset, Plan]:
    """:func:`planned` for ``data`` as read (only subsampled): the config with everything the plan chose, the data as
    the model will see them (dequantized, rescaled and reduced as the config and the plan ask), and the plan.

    :param report: say on stderr when the plan dequantizes or reduces the data.
    """
    data = with_levels(data)
    c, plan = planned(config, shape_of(data, bool(config.pretrain_classes)), data.n_classes)
    if report and c.dequantize and config.dequantize is None:
        assert data.levels is not None and data.top is not None
        found = Levels(data.levels, data.bottom, data.top).describe()
        print(f"mixzoo: the data take {found}: {c.family.name} dequantizes them to [0, 1), as it does integer images "
              "(its recipe for quantized data); --no-dequantize keeps them", file=sys.stderr, flush=True)  # fmt: skip
    if report and c.pca and config.pca is None:
        print(f"mixzoo: {c.family.name} reduces the {data.x.shape[1]} features to {c.pca} principal components "
              "(its recipe for data of this shape); --pca 0 keeps them all", file=sys.stderr, flush=True)  # fmt: skip
    if config.pretrain_classes:  # the user's stages went into the classifier (load_data); the plan's PCA is left
        return c, (preprocess(data, pca=c.pca, seed=c.seed) if c.pca and config.pca is None else data), plan
    data = preprocess(data, dequantize=c.dequantize, scale=c.scale or "none", pca=c.pca or None, seed=c.seed)
    return c, data, plan
