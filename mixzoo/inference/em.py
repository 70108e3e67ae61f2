r"""Batch-wise expectation-maximization as a :class:`pyro.infer.ELBO`.

The guide is the E-step: it enumerates the cluster site ``"y"`` with the
posterior responsibilities :math:`r_{nk} = q(y_n = k \mid x_n)` of the current
parameters :math:`\theta^t`. The loss is the negative EM objective of Tissera et
al. (2022), eq. (1), restricted to the minibatch and held constant in :math:`r`:

.. math::
    L(\theta \mid \theta^t) = -\frac{N}{B} \sum_{n \in \text{batch}} \sum_{k=1}^K
        \operatorname{sg}(r_{nk}) \, \bigl[\log p(y_n = k) + \textstyle\sum_s \log p_s(x_n \mid y_n = k)\bigr]
        \;-\; \sum_{\text{global } s} \log p_s,

where :math:`\operatorname{sg}` stops gradients and :math:`s` runs over the
model's sample and factor sites. For the neural mixture
(:class:`~mixzoo.models.neural_mixture.NeuralMixture`) the data site is
:math:`\log \operatorname{sigmoid}(a^*_{nk}/\gamma)`, so with a uniform prior this
is :math:`N` times the paper's eq. (6) (:math:`\frac{1}{n}\sum` over the batch
becomes the plate's :math:`N/B` scaling), and eq. (7) when the model adds the
augmented inputs' term. One optimizer step on it is the M-step (section 6).

Relation to :class:`~pyro.infer.TraceEnum_ELBO`: with the same guide,
:math:`-\mathrm{ELBO} = L - \sum_n H(r_n)`, and because :math:`r` is constant
in the M-step the entropy has no gradient: both losses have the same gradient
with respect to :math:`\theta`, and their values differ by the entropy.
``EM`` computes :math:`L` itself, so the loss it reports is the EM objective.

Reference: Tissera et al., *Neural Mixture Models with Expectation-Maximization
for End-to-end Deep Clustering* (Tissera et al. 2022), eqs. (1), (6), (7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyro.poutine as poutine
import torch
from pyro.infer.elbo import ELBO
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.trace_struct import Trace
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan

from ..contract import CLUSTER_SITE, DATA_PLATE, cluster_site, in_data_plate, is_subsample, latent_sites, site_log_prob
from ..errors import MixzooInputError
from .untraced import StatedTable, backward_value, states
from .validated import ValidatedPairs

__all__ = ["EM"]


class EM(ELBO):
    """Batch-wise EM: the guide's enumerated ``"y"`` gives the responsibilities of the
    E-step, held constant; the loss is the negative expected complete-data log-likelihood.

    :param max_plate_nesting: plates nested in the model (1: the ``"data"`` plate).
    :param num_particles: E-steps averaged per loss (they coincide for a deterministic guide).
    :param data_plate: the plate over points; sites inside it are weighted by :math:`r`.
    """

    enumerates_model = False
    """The cluster site is enumerated in the guide, not summed out in the model."""

    def __init__(self, max_plate_nesting: int = 1, num_particles: int = 1, data_plate: str = DATA_PLATE) -> None:
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.data_plate = data_plate
        self._validated = ValidatedPairs()
        self.table = StatedTable(
            lambda model, guide: num_particles == 1 and states(guide, "log_posterior") and getattr(guide, "model", None) is model
        )

    def check_pair(self, model_trace: Trace, guide_trace: Trace) -> None:
        """Refuse a guide that does not enumerate ``"y"``, that samples other latents, or that has
        parameters of its own (EM gives them no gradient)."""
        site = cluster_site(guide_trace)
        if site is None:
            raise MixzooInputError(
                "loss EM needs a guide that samples the cluster site 'y' (the E-step), "
                "e.g. the neural mixture's 'e-step' guide; this guide does not."
            )
        if site["infer"].get("enumerate") != "parallel":
            raise MixzooInputError("loss EM needs the guide's 'y' declared with infer={'enumerate': 'parallel'}.")
        others = [name for name, _ in latent_sites(guide_trace) if name != CLUSTER_SITE]
        if others:
            raise MixzooInputError(
                f"loss EM holds only the E-step over 'y' fixed; the guide also samples {', '.join(others)}. "
                "Use an ELBO (--loss trace-enum) for guides with further latents."
            )
        model_params = {name for name, s in model_trace.nodes.items() if s["type"] == "param"}
        own = sorted(name for name, s in guide_trace.nodes.items() if s["type"] == "param" and name not in model_params)
        if own:
            shown = ", ".join(own[:3]) + (f" and {len(own) - 3} more" if len(own) > 3 else "")
            raise MixzooInputError(
                f"loss EM takes q(y|x) as a fixed E-step, so the guide's own parameters ({shown}) would never "
                "train; use a guide computed from the model (the 'e-step' guide) or an ELBO (--loss trace-enum)."
            )

    def _get_trace(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Trace, Trace]:
        """The E-step (guide, ``"y"`` enumerated in parallel) and the model replayed against it, with the
        ``log_prob`` of the model's sample sites and of the guide's ``"y"``.

        Only what the EM loss reads is computed: no score parts of the guide and no pruned copies of the
        traces. While Pyro's validation is enabled, the first trace of each pair runs with it (distribution
        arguments and supports, then site matching and shapes); later traces of the pair run without it
        (:meth:`~mixzoo.inference.validated.ValidatedPairs.checks`), which changes no value.
        """
        with self._validated.checks(model, guide) as validate:
            enum_guide = EnumMessenger(first_available_dim=-1 - self.max_plate_nesting)(guide)
            guide_trace = poutine.trace(enum_guide).get_trace(*args, **kwargs)
            enum_model = EnumMessenger()(model)
            model_trace = poutine.trace(poutine.replay(enum_model, trace=guide_trace)).get_trace(*args, **kwargs)
            for trace, names in ((model_trace, None), (guide_trace, (CLUSTER_SITE,))):
                for name, site in trace.nodes.items():
                    if site["type"] == "sample" and not is_subsample(site) and (names is None or name in names):
                        site_log_prob(site)
            if validate:
                self._validate(model_trace, guide_trace)
        return model_trace, guide_trace

    def _validate(self, model_trace: Trace, guide_trace: Trace) -> None:
        check_model_guide_match(model_trace, guide_trace, self.max_plate_nesting)
        for trace in (model_trace, guide_trace):
            for site in trace.nodes.values():
                if site["type"] == "sample" and not is_subsample(site):
                    site_log_prob(site)
                    check_site_shape(site, self.max_plate_nesting)

    def _get_traces(
        self, model: Callable[..., Any], guide: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[tuple[Trace, Trace]]:
        for _ in range(self.num_particles):
            yield self._get_trace(model, guide, args, kwargs)

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace) -> torch.Tensor:
        q = guide_trace.nodes.get(CLUSTER_SITE)
        if q is None:
            raise MixzooInputError("loss EM needs a guide that samples the cluster site 'y'.")
        r = q["unscaled_log_prob"].detach().exp()  # (K, B): responsibilities of the E-step
        total = torch.zeros((), device=r.device)
        for site in model_trace.nodes.values():
            if site["type"] != "sample" or is_subsample(site):
                continue
            log_p = site["log_prob"]  # already scaled by N/B inside the data plate
            if in_data_plate(site, self.data_plate):
                total = total + (r * log_p).sum()  # sites that do not depend on y: sum_k r = 1
            else:
                total = total + log_p.sum()
        return -total

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any):
        """The EM loss :math:`L(\\theta \\mid \\theta^t)` as a tensor that autograd can differentiate."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            loss = loss + self._particle_loss(model_trace, guide_trace) / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The EM loss as a float."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def _table_loss(self, model: Any, guide: Any, n: int, xb: torch.Tensor) -> torch.Tensor:
        r""":math:`L` from the guide's stated :math:`\log r` and the model's stated table
        (:mod:`~mixzoo.inference.untraced`), E-step first as in the trace."""
        r = guide.log_posterior(xb).detach().exp()
        return -(n / xb.shape[0]) * (r * model.log_joint(xb)).sum()

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The EM loss; its gradient (the M-step direction) is accumulated into the parameters."""
        batch = self.table.batch(model, guide, args, kwargs, lambda: self.differentiable_loss(model, guide, *args, **kwargs))
        if batch is not None:
            return backward_value(self._table_loss(model, guide, *batch))
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle = self._particle_loss(model_trace, guide_trace) / self.num_particles
            trainable = any(s["type"] == "param" for tr in (model_trace, guide_trace) for s in tr.nodes.values())
            if trainable and particle.requires_grad:
                particle.backward()
            loss += float(particle.detach())
        warn_if_nan(loss, "loss")
        return loss
