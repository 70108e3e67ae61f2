r"""Expectation-maximization: the E-step is the ``posterior`` guide, the M-step a gradient step or a closed form.

The guide enumerates the cluster site ``"y"`` with the responsibilities :math:`r_{nk} = q(y_n = k \mid x_n)` of
the current parameters :math:`\theta^t` (the model's posterior, computed without gradient: the E-step). The loss is
the negative EM objective (Dempster, Laird and Rubin 1977; Tissera et al. 2022, eq. 1), restricted to the
minibatch and held constant in :math:`r`,

.. math::
    L(\theta \mid \theta^t) = -\frac{N}{B} \sum_{n \in \text{batch}} \sum_{k=1}^K
        \operatorname{sg}(r_{nk}) \, \bigl[\log p(y_n = k) + \textstyle\sum_s \log p_s(x_n \mid y_n = k)\bigr]
        \;-\; \sum_{\text{global } s} \log p_s,

where :math:`\operatorname{sg}` stops gradients and :math:`s` runs over the model's sample and factor sites.
One optimizer step on it is the (generalized) M-step. The value reported adds the entropy
:math:`\frac{N}{B}\sum_n H(r_n)`, which has no gradient: :math:`L - \sum_n H(r_n)` is the negative ELBO at the
E-step, which is the exact negative log-likelihood :math:`-\sum_n \log p(x_n)` when :math:`r` is the exact
posterior. So runs trained by EM and by :class:`~pyro.infer.TraceEnum_ELBO` report comparable losses, and, by
Fisher's identity, the gradient of :math:`L` at :math:`\theta^t` is the gradient of :math:`-\log p(x)`.

**Closed form.** A model whose components are exponential families (:class:`~mixzoo.contract.ClosedFormEM`)
offers the M-step's maximizer from the responsibility-weighted sufficient statistics (Bishop 2006, section 9.2.2,
eqs. 9.23-9.27 for the Gaussian mixture). With it the algorithm's step is :class:`ClosedFormEMStep`: each minibatch
is one chunk of the exact E-step, and once an epoch has visited every point the M-step sets the parameters, so an
epoch is one EM iteration on all of the data and the likelihood never falls.

**The neural mixture** (Tissera et al. 2022) states its own E-step (:class:`~mixzoo.contract.StatesPosterior`,
the softmax of its normalized scores, their eq. 5), and its data site is
:math:`\log \operatorname{sigmoid}(a^*_{nk}/\gamma)`, so with a uniform prior :math:`L` is :math:`N` times the
paper's eq. (6), and eq. (7) when the model adds the augmented inputs' term.

References: Dempster, Laird and Rubin, *Maximum Likelihood from Incomplete Data via the EM Algorithm* (1977);
Tissera et al., *Neural Mixture Models with Expectation-Maximization for End-to-end Deep Clustering* (2022),
eqs. (1), (5)-(7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyro.poutine as poutine
import torch
import torch.distributed
from pyro.infer.elbo import ELBO
from pyro.optim import PyroOptim
from pyro.poutine.enum_messenger import EnumMessenger
from pyro.poutine.trace_struct import Trace
from pyro.util import check_model_guide_match, check_site_shape, warn_if_nan

from ..contract import (
    CLUSTER_SITE,
    DATA_PLATE,
    ClosedFormEM,
    ModelCapabilities,
    cluster_site,
    in_data_plate,
    is_subsample,
    latent_sites,
    site_log_prob,
)
from ..data.mapped import take
from ..errors import MixzooInputError, TrainingDivergedError
from .data_parallel import DistributedContext
from .registry import Algorithm, GuideFacts, register_algorithm
from .step import SVIStep
from .untraced import StatedTable, backward_value, states
from .validated import ValidatedPairs

__all__ = ["EM", "ClosedFormEMStep", "em_step"]


class EM(ELBO):
    """Batch-wise EM: the guide's enumerated ``"y"`` gives the responsibilities of the E-step, held constant; the
    gradient is that of the negative expected complete-data log-likelihood, the value the negative ELBO at the
    E-step (see the module docstring).

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
        self.table = StatedTable(self._table_ok)

    def _table_ok(self, model: Any, guide: Any) -> bool:
        """An E-step guide of this model that states its posterior (one particle: the table is the E-step)."""
        return self.num_particles == 1 and states(guide, "log_posterior") and getattr(guide, "model", None) is model

    def check_pair(self, model_trace: Trace, guide_trace: Trace) -> None:
        """Refuse a guide that does not enumerate ``"y"``, that samples other latents, or that has
        parameters of its own (EM gives them no gradient)."""
        site = cluster_site(guide_trace)
        if site is None:
            raise MixzooInputError(
                "loss EM needs a guide that samples the cluster site 'y' (the E-step): the 'posterior' guide; "
                "this guide does not."
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
                "train; use the 'posterior' guide (the model's own E-step) or an ELBO (--loss trace-enum)."
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

    def _particle_loss(self, model_trace: Trace, guide_trace: Trace) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`L` and the entropy term :math:`\\frac{N}{B} \\sum_n H(r_n)` (without gradient) of one E-step."""
        q = guide_trace.nodes.get(CLUSTER_SITE)
        if q is None:
            raise MixzooInputError("loss EM needs a guide that samples the cluster site 'y'.")
        log_r = q["unscaled_log_prob"].detach()  # (K, B): log responsibilities of the E-step
        r = log_r.exp()
        total = torch.zeros((), device=r.device)
        scale = 1.0
        for site in model_trace.nodes.values():
            if site["type"] != "sample" or is_subsample(site):
                continue
            log_p = site["log_prob"]  # already scaled by N/B inside the data plate
            if in_data_plate(site, self.data_plate):
                total = total + (r * log_p).sum()  # sites that do not depend on y: sum_k r = 1
                scale = site["scale"]
            else:
                total = total + log_p.sum()
        entropy = -(r * log_r).sum() * scale
        return -total, entropy

    def differentiable_loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any):
        """The EM loss :math:`L(\\theta \\mid \\theta^t)` minus the E-step's entropy (which has no gradient), as a
        tensor that autograd can differentiate."""
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            value, entropy = self._particle_loss(model_trace, guide_trace)
            loss = loss + (value - entropy) / self.num_particles
        warn_if_nan(loss, "loss")
        return loss

    def loss(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The negative ELBO at the E-step (the negative log-likelihood for an exact E-step), as a float."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def _table_loss(self, model: Any, guide: Any, n: int, xb: torch.Tensor) -> torch.Tensor:
        r""":math:`L - H` from the guide's stated :math:`\log r` and the model's stated table
        (:mod:`~mixzoo.inference.untraced`), E-step first as in the trace."""
        log_r = guide.log_posterior(xb).detach()
        r = log_r.exp()
        return -(n / xb.shape[0]) * (r * (model.log_joint(xb) - log_r)).sum()

    def loss_and_grads(self, model: Callable[..., Any], guide: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
        """The loss; the gradient of :math:`L` (the M-step direction) is accumulated into the parameters."""
        batch = self.table.batch(model, guide, args, kwargs, lambda: self.differentiable_loss(model, guide, *args, **kwargs))
        if batch is not None:
            return backward_value(self._table_loss(model, guide, *batch))
        loss = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            value, entropy = self._particle_loss(model_trace, guide_trace)
            particle = value / self.num_particles
            trainable = any(s["type"] == "param" for tr in (model_trace, guide_trace) for s in tr.nodes.values())
            if trainable and particle.requires_grad:
                particle.backward()
            loss += float(particle.detach() - entropy / self.num_particles)
        warn_if_nan(loss, "loss")
        return loss


class ClosedFormEMStep:
    """One EM iteration per epoch: the exact E-step chunk by chunk, the closed-form M-step at the end of the epoch.

    Each minibatch is one chunk of the E-step: the step computes the responsibilities of the current parameters from
    the model's table (observed labels fix them to one-hot), adds the chunk's weighted sufficient statistics, and
    returns the chunk's negative log-likelihood, scaled to the whole data set like :meth:`pyro.infer.SVI.step`.
    Under a process group each process takes its shard of the minibatch and the statistics are summed over
    processes before the M-step, so every process sets the same parameters. The batch size only bounds memory; the
    epoch loss is the exact negative log-likelihood of the parameters the iteration started from.

    :param model: a :class:`~mixzoo.contract.ClosedFormEM` model.
    """

    shards_by_range = True
    """Under a process group each process takes the rows of its own range (the E-step is a sum over points)."""

    convergence_patience = 1
    """Epochs of change below ``tol`` before training stops: the epoch loss is the exact negative
    log-likelihood and EM never raises it, so one quiet iteration is as good as three (a minibatch
    loss needs three)."""

    def __init__(self, model: Any, *, context: DistributedContext | None = None) -> None:
        if not isinstance(model, ClosedFormEM):
            raise MixzooInputError(
                f"closed-form EM needs a model with log_joint, em_statistics and em_update; {type(model).__name__} has not."
            )
        self.context = context or DistributedContext()
        self.model = model
        self._stats: dict[str, torch.Tensor] | None = None
        self._worst: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reseeded = 0
        """Components moved to the worst-explained points after they emptied (a model with ``reseed_empty``)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor | None, idx: torch.Tensor, **kwargs: Any) -> float:
        n_batch = len(idx)
        if self.context.world > 1:  # each process takes its shard; the statistics are summed at the M-step
            idx = self.context.shard(idx, x.shape[0], by_range=True)
        idx = idx.sort().values  # the statistics are sums: in the file's order the rows read forward
        with torch.no_grad():
            xb = take(x, idx)  # index_select (3x faster than x[idx]); from a mapped file, a span at a time
            log_joint = self.model.log_joint(xb)
            log_px = torch.logsumexp(log_joint, -1)
            r = (log_joint - log_px[:, None]).exp()
            if y is not None:
                yb = y.index_select(0, idx)
                seen = yb >= 0
                if seen.any():
                    r[seen] = torch.nn.functional.one_hot(yb[seen], r.shape[-1]).to(r.dtype)
            stats = self.model.em_statistics(xb, r)
            self._stats = stats if self._stats is None else {k: self._stats[k] + v for k, v in stats.items()}
            if hasattr(self.model, "reseed_empty"):  # the worst-explained points, where an empty component moves
                keep = min(r.shape[-1], len(log_px))
                low, at = torch.topk(-log_px, keep)
                if self._worst is not None:
                    low, rows = torch.cat([self._worst[0], low]), torch.cat([self._worst[1], xb[at]])
                    low, order = torch.topk(low, min(r.shape[-1], len(low)))
                    self._worst = (low, rows[order])
                else:
                    self._worst = (low, xb[at])
            return -self.context.sum(float(log_px.sum())) * x.shape[0] / n_batch

    def end_epoch(self) -> None:
        if self._stats is None:
            return
        stats, self._stats = self._stats, None
        if self.context.world > 1:
            for value in stats.values():
                torch.distributed.all_reduce(value)
        worst, self._worst = self._worst, None  # the epoch's, used or not
        if not all(bool(torch.isfinite(v).all()) for v in stats.values()):
            raise TrainingDivergedError("EM: the E-step's statistics are not finite; the parameters are those of the last iteration.")
        with torch.no_grad():
            self.model.em_update(stats)
            if worst is not None and self.context.world == 1:
                self.reseeded += self.model.reseed_empty(stats["n"], worst[1])

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def restore(self, state: dict[str, Any]) -> None:
        self._stats, self._worst = None, None

    def scale_lr(self, factor: float) -> None:
        pass


def em_step(
    model: Any,
    guide: Callable[..., Any],
    optim: PyroOptim,
    loss: ELBO,
    *,
    context: DistributedContext | None = None,
    seed: int | None = None,
) -> ClosedFormEMStep | SVIStep:
    """The EM step for ``model``: the closed form where the model offers it, else one SVI step with the loss."""
    if isinstance(model, ClosedFormEM):
        return ClosedFormEMStep(model, context=context)
    return SVIStep(model, guide, optim, loss, context=context, seed=seed)


def _requires(model: ModelCapabilities, guide: GuideFacts) -> str | None:
    if not model.normalized:
        return "needs a normalized model (EM maximizes log p(x)); this one is known only up to its normalizers: use --loss nce"
    if not guide.held_fixed:
        return "needs the E-step as its guide (--guide posterior: the model's posterior, held fixed)"
    return None


register_algorithm(
    Algorithm(
        name="em",
        description="expectation-maximization: exact E-step (the posterior guide), closed-form M-step where the model "
        "offers one, else a gradient step on the expected complete-data log-likelihood",
        cite="Dempster, Laird and Rubin 1977; batch-wise: Tissera et al. 2022",
        loss_class=EM,
        make=lambda options, context: EM(),
        requires=_requires,
        step=lambda caps: em_step if caps.closed_form_em else None,
        closed_form=lambda caps: caps.closed_form_em,
    )
)
