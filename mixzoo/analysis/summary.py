r"""ArviZ summaries of a fitted model/guide pair.

:func:`summarize` turns a fitted pair and its data into ArviZ data with the groups

* ``posterior``: the global parameters. Module parameters are point estimates and
  appear with one chain and one draw, shape ``(1, 1, ...)``; global latent sites that
  the guide samples are drawn with :class:`pyro.infer.Predictive` on the guide, shape
  ``(1, S, ...)`` (module parameters are then repeated along the S draws, as one
  group shares one ``draw`` dimension).
* ``cluster_posterior``: the per-point responsibilities :math:`p(y=k \mid x_n)` at the
  point estimate, variable ``responsibility`` with dims ``(chain, draw, obs, cluster)``
  (a separate group, so that :func:`arviz.summary` of the posterior stays short).
* ``log_likelihood``: variable ``x``, the pointwise :math:`\log p(x_n)` with ``"y"``
  summed out, dims ``(chain, draw, obs)``, ready for :func:`arviz.loo` and
  :func:`arviz.compare`.
* ``observed_data``: variable ``x``, dims ``(obs, feature)``.

On data of more than ``SUMMARY_POINTS`` (50000) points the three per-point groups hold a seeded subsample of that many,
whose ``obs`` coordinate is the rows' numbers in the data; the attributes ``mixzoo_points`` and
``mixzoo_points_of`` say how many of how many (LOO on them estimates the subsample's sum).

**Pointwise log-likelihood of point-estimated models.** PSIS-LOO needs several draws
from a posterior, and a maximum-likelihood fit has one point. Where the guide samples
no global latents, the draws come from a Laplace approximation around the fitted
parameters: the diagonal :math:`h` of the Hessian of the negative log-likelihood
:math:`-\sum_n \log p(x_n)` with respect to the unconstrained module parameters is
computed with :mod:`torch.autograd` (exactly, one Hessian-vector product per entry, up
to ``max_exact`` entries; above that with Hutchinson's estimator), and ``n_draws``
parameter vectors :math:`\theta_s \sim \mathcal N(\hat\theta, \operatorname{diag}(h)^{-1})`
are evaluated. Entries with zero curvature do not touch the likelihood (for example
the unused upper triangle of a Cholesky parameter) and stay fixed; so do entries with
negative or tiny curvature (below ``min_curvature``: a flat direction, a saddle, an unconverged fit, or Hutchinson's
estimate of a small curvature), where a Gaussian around the fit would not describe the likelihood: the attribute
``mixzoo_laplace_held_fixed`` counts them. A diagonal ignores how parameters move together (the entries of a
Cholesky factor, a network's weights), and its draws can fall far below the likelihood of the fit; the standard
deviations are shrunk by one factor until a few pilot draws lose the log-likelihood the approximation predicts for
itself (half the number of moved entries), recorded as ``mixzoo_laplace_scale``. This is cheap and honest about what it is: a local,
diagonal approximation of the likelihood surface under a flat prior, enough to rank
models with LOO, not a full Bayesian posterior. Bootstrap refits would be closer to
frequentist uncertainty but cost one training run per draw.

**Which objective sets the curvature.** The negative log-likelihood above, computed with
:class:`~pyro.infer.TraceEnum_ELBO` (for a guide that samples per-point latents, such as the
GMVAE's z, that is a one-sample estimate of the negative ELBO). A model fitted by another
criterion names the objective itself with ``laplace_loss(x, seed=...)``: the energy mixture,
whose non-normalized log-likelihood :math:`\log \sum_k \exp(\theta_k^\top f(x) + c_k)` is
convex in :math:`(\theta, c)` and has no maximum, gives its NCE loss (eq. 4 of Matsuda and
Hyvärinen 2019), at whose optimum it was fitted. The curvature is computed with every module
in evaluation mode (each module's mode is restored afterwards), so that a module whose forward
pass depends on the mode (the neural mixture's batch-normalized scores) is differentiated
through the same likelihood the draws evaluate, and no running statistics change.

**What the posterior shows.** A model that defines ``summary_quantities()`` names its globals in
their constrained space (mixing weights, means, scales or covariances instead of logits and
log-scales); one whose ``summary_quantities`` takes an argument is given the data ``x``, for
quantities defined through them (the linear energy mixture's weights, its mean responsibilities,
as its :math:`Z(\theta_k)` has no closed form). Such a model speaks for
the pair: the guide's raw parameters (amortized encoders) are then left out unless the guide
names its own quantities. Under the Laplace approximation the quantities are computed for
every parameter draw, so :func:`arviz.summary` reports their spread and HDI. Network weights
are perturbed in the draws (they move the log-likelihood) but are not summarized.

**ArviZ versions.** All groups are built as plain arrays and handed to
:func:`mixzoo.analysis.arviz_adapter.to_arviz`; that module is the one place that knows whether
the installed ArviZ uses ``InferenceData`` (0.x) or ``xarray.DataTree`` (1.x), and it
also reads and writes the netCDF files (:func:`save_summary`) and computes LOO.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyro.poutine as poutine
import torch
from pyro.infer import Predictive, TraceEnum_ELBO
from pyro.poutine.util import site_is_subsample

from ..contract import in_data_plate
from ..data.rows import subsample_rows, take_rows
from ..errors import MixzooInputError
from ..param_store import StateDict, isolated_param_store, modules_of
from .arviz_adapter import ArvizData, save, to_arviz
from .posterior import as_input, cluster_log_joint, cluster_proba, has_exact_likelihood, log_likelihood

__all__ = ["summarize", "laplace_diagonal", "save_summary", "ArvizData", "SUMMARY_POINTS"]

SUMMARY_POINTS = 50_000
"""Points the per-point groups of :func:`summarize` hold at most (a seeded subsample of larger data): 20 draws of
their pointwise log-likelihood are a million values, and on millions of points all of them would be gigabytes."""


def save_summary(data: ArvizData, path: str | Path) -> Path:
    """Write ArviZ data (either version) to a netCDF file and return its path."""
    return save(data, path)


def _curvature_loss(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor, seed: int) -> torch.Tensor:
    """The objective whose Hessian diagonal sets the Laplace approximation: the model's own ``laplace_loss``
    where it names one, else :math:`-\\sum_n \\log p(x_n)` by enumeration (see the module docstring)."""
    if _names_laplace_loss(model):
        return getattr(model, "__self__", model).laplace_loss(x, seed=seed)
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)


def _names_laplace_loss(model: Callable[..., Any]) -> bool:
    return callable(getattr(getattr(model, "__self__", model), "laplace_loss", None))


@contextmanager
def _evaluation_mode(modules: list[torch.nn.Module]) -> Iterator[None]:
    """Every submodule in evaluation mode for the block; each one's own mode restored after it."""
    modes = [(sub, sub.training) for m in modules for sub in m.modules()]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


def laplace_diagonal(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    *,
    max_exact: int = 5000,
    n_probes: int = 64,
    max_points: int = 5000,
    seed: int = 0,
) -> list[torch.Tensor]:
    """Diagonal of the Hessian of :math:`-\\sum_n \\log p(x_n)` w.r.t. each module parameter.

    Exact (one Hessian-vector product per entry) for up to ``max_exact`` entries in
    total, otherwise Hutchinson's estimate :math:`E[v \\odot Hv]` with ``n_probes``
    Rademacher vectors. With more than ``max_points`` points the Hessian of the sum is
    estimated from a seeded random subset of ``max_points`` of them, scaled by
    :math:`N / m` (the sum's Hessian is N times the mean's). An estimated entry within two standard errors (over the
    probes) of zero is NaN: the probes cannot tell its curvature from zero. A model's own ``laplace_loss``
    replaces the negative log-likelihood, and the modules are in evaluation mode throughout
    (see the module docstring). Returns one tensor per parameter of ``modules_of(model, guide)``.
    """
    with _evaluation_mode(modules_of(model, guide)):
        return _hessian_diagonal(
            model, guide, x, max_exact=max_exact, n_probes=n_probes, max_points=max_points, seed=seed
        )


def _hessian_diagonal(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    *,
    max_exact: int,
    n_probes: int,
    max_points: int,
    seed: int,
) -> list[torch.Tensor]:
    params = [p for m in modules_of(model, guide) for p in m.parameters() if p.requires_grad]
    n = x.shape[0]
    scale = 1.0
    if n > max_points:
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].to(x.device)
        x, scale = x[pick], n / max_points
    with isolated_param_store():
        loss = _curvature_loss(model, guide, x, seed) * scale
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    used = [(p, g) for p, g in zip(params, grads, strict=True) if g is not None and g.requires_grad]
    diag = [torch.zeros_like(p) for p in params]
    index = {id(p): i for i, p in enumerate(params)}
    total = sum(p.numel() for p, _ in used)
    if total <= max_exact:
        for p, g in used:
            flat = g.reshape(-1)
            out = diag[index[id(p)]].reshape(-1)
            for j in range(flat.numel()):
                (row,) = torch.autograd.grad(flat[j], p, retain_graph=True, allow_unused=True)
                if row is not None:
                    out[j] = row.reshape(-1)[j]
    else:
        gen = torch.Generator().manual_seed(seed)
        squares = [torch.zeros_like(p) for p in params]
        for _ in range(n_probes):
            vs = [torch.randint(0, 2, p.shape, generator=gen).to(p) * 2 - 1 for p, _ in used]
            hv = torch.autograd.grad(
                [g for _, g in used], [p for p, _ in used], grad_outputs=vs, retain_graph=True, allow_unused=True
            )
            for (p, _), v, h in zip(used, vs, hv, strict=True):
                if h is not None:
                    diag[index[id(p)]] += v * h / n_probes
                    squares[index[id(p)]] += (v * h).square() / n_probes
        for d, sq in zip(diag, squares, strict=True):  # an estimate within two standard errors of zero says nothing
            stderr = ((sq - d.square()).clamp(min=0) / max(n_probes - 1, 1)).sqrt()
            d.masked_fill_((sq > 0) & (d <= 2 * stderr), float("nan"))
    return [d.detach() for d in diag]


def _laplace_loglik(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    n_draws: int,
    seed: int,
    min_curvature: float,
    weight: float = 1.0,
) -> tuple[np.ndarray, dict[str, np.ndarray], int, float]:
    """Pointwise log-likelihood draws (n_draws, N), the quantities of each draw, under the diagonal Laplace
    approximation around the fitted parameters, how many parameter entries were held at the fit, and the factor on
    the standard deviations (:func:`_laplace_scale`). ``x`` may be a subsample of the data standing for ``weight``
    times as many points: the curvature and the pilot draws' losses are then scaled by it."""
    params = [p for m in modules_of(model, guide) for p in m.parameters() if p.requires_grad]
    diag = [d * weight for d in laplace_diagonal(model, guide, x, seed=seed)]
    # the approximation holds where the likelihood curves upward: flat, saddle or unconverged directions (curvature
    # below min_curvature, or an estimate of it) are held at the fit, and counted in the data's attributes
    fixed = sum(int(((d != 0) & ~(d >= min_curvature)).sum()) for d in diag)
    std = [torch.where(d >= min_curvature, d.clamp(min=min_curvature).rsqrt(), torch.zeros_like(d)) for d in diag]
    exact = has_exact_likelihood(model, guide, x)  # once: the draws move parameters, not the model's latents
    saved = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(seed)

    def pointwise() -> np.ndarray:
        point = torch.logsumexp(cluster_log_joint(model, guide, x), -1) if exact else log_likelihood(model, guide, x)
        return point.cpu().double().numpy()

    def perturb(scale: float) -> None:
        with torch.no_grad():
            for p, p0, sd in zip(params, saved, std, strict=True):
                p.copy_(p0 + scale * sd * torch.randn(p.shape, generator=gen).to(p))

    out = np.empty((n_draws, x.shape[0]))
    draws: list[dict[str, np.ndarray]] = []
    try:
        scale = _laplace_scale(pointwise, perturb, sum(int((sd > 0).sum()) for sd in std), weight)
        for s in range(n_draws):
            perturb(scale)
            with torch.no_grad():
                draws.append(_quantities(model, guide, x))
            out[s] = pointwise()
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, saved, strict=True):
                p.copy_(p0)
    return out, {name: np.stack([d[name] for d in draws])[None] for name in draws[0]}, fixed, scale


LAPLACE_PILOT_DRAWS = 4


def _laplace_scale(
    pointwise: Callable[[], np.ndarray], perturb: Callable[[float], None], moved: int, weight: float = 1.0
) -> float:
    r"""The factor :math:`c \le 1` on the Laplace standard deviations that makes the draws lose, on average, the
    log-likelihood a Gaussian approximation predicts for itself.

    Under :math:`\theta \sim \mathcal N(\hat\theta, H^{-1})` with the exact Hessian :math:`H` of the negative
    log-likelihood :math:`L`, :math:`E[L(\theta) - L(\hat\theta)] \approx \frac12 E[\delta^\top H \delta] =
    P / 2` for :math:`P` moved entries. The diagonal of :math:`H` ignores how the entries move together (a Cholesky
    factor's entries, a network's weights), so its draws can lose hundreds of nats per point; shrinking them by
    :math:`c` until a few pilot draws lose about :math:`P / 2` in all keeps the draws where the likelihood is (Ritter,
    Botev and Barber 2018 temper their Laplace posteriors for the same reason). Where ``pointwise`` scores a
    subsample, ``weight`` scales its loss to all the points."""
    base = float(pointwise().sum())
    target = max(moved, 1) / 2
    scale = 1.0
    for _ in range(12):
        losses = []
        for _ in range(LAPLACE_PILOT_DRAWS):
            perturb(scale)
            total = float(pointwise().sum())
            losses.append(weight * (base - total) if np.isfinite(total) else np.inf)
        loss = float(np.mean(losses))
        if loss <= 2 * target:  # within a factor of two of what the approximation predicts (or better)
            return scale
        # the loss grows with the variance, c^2: step towards the target, at most a factor 100 at a time
        scale *= max(0.1, min(0.9, float(np.sqrt(target / loss)) if np.isfinite(loss) else 0.1))
    return scale


def _guide_global_draws(
    guide: Callable[..., Any], x: torch.Tensor, n_draws: int, param_state: StateDict | None
) -> dict[str, torch.Tensor]:
    """Draws of the guide's sample sites outside the data plate (global latents)."""
    with torch.no_grad(), isolated_param_store(param_state):
        tr = poutine.trace(guide).get_trace(x)
        names = [
            name
            for name, site in tr.nodes.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and not site_is_subsample(site)  # a plate's own site, not a latent
            and not in_data_plate(site)
        ]
        if not names:
            return {}
        return Predictive(guide, num_samples=n_draws, return_sites=names, parallel=False)(x)


def _sampled_loglik(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: torch.Tensor,
    draws: dict[str, torch.Tensor],
    param_state: StateDict | None,
) -> np.ndarray:
    n_draws = next(iter(draws.values())).shape[0]
    with torch.no_grad(), isolated_param_store(param_state):
        tr = poutine.trace(guide).get_trace(x)
    out = np.empty((n_draws, x.shape[0]))
    for s in range(n_draws):
        for name, v in draws.items():
            tr.nodes[name]["value"] = v[s]
        fixed = poutine.replay(guide, trace=tr)
        out[s] = log_likelihood(model, fixed, x, param_state=param_state).cpu().double().numpy()
    return out


def _natural_quantities(module: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray] | None:
    """The module's ``summary_quantities()`` as arrays (given ``x`` where it takes an argument), or ``None``
    where it names none."""
    natural = getattr(module, "summary_quantities", None)
    if not callable(natural):
        return None
    with torch.no_grad():
        values = natural(x) if inspect.signature(natural).parameters else natural()
    return {name: v.detach().cpu().double().numpy() for name, v in values.items()}


def _quantities(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor) -> dict[str, np.ndarray]:
    """The fitted globals as the posterior group shows them: the model's natural quantities when it names them
    (``summary_quantities()``: mixing weights, means, scales instead of logits and log-scales), else its raw
    parameters; the guide's under ``guide.``, its raw parameters only where the model names none."""
    mods = modules_of(model, guide)
    out: dict[str, np.ndarray] = {}
    model_named = False
    for i, m in enumerate(mods):
        is_model = i == 0 and m is getattr(model, "__self__", model)
        prefix = "" if is_model else "guide."
        natural = _natural_quantities(m, x)
        if natural is not None:
            model_named = model_named or is_model
            out.update({prefix + name: v for name, v in natural.items()})
        elif not model_named:
            out.update({prefix + name: p.detach().cpu().double().numpy() for name, p in m.named_parameters()})
    return out


def _param_arrays(model: Callable[..., Any], guide: Callable[..., Any], x: torch.Tensor) -> dict[str, np.ndarray]:
    return {name: v[None, None] for name, v in _quantities(model, guide, x).items()}


def summarize(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: Any,
    *,
    n_draws: int = 200,
    seed: int = 0,
    min_curvature: float = 1e-6,
    param_state: StateDict | None = None,
    max_points: int | None = SUMMARY_POINTS,
) -> ArvizData:
    """ArviZ data for a fitted pair on data ``x``; see the module docstring for the groups.

    :param x: data as :func:`mixzoo.fit` takes them (NumPy, pandas, lists or tensors), (N, D).
    :param n_draws: draws for the pointwise log-likelihood (Laplace draws of module
        parameters, or guide draws of global latents); ``0`` evaluates the point
        estimate only (one draw, which :func:`arviz.loo` cannot use).
    :param seed: seeds the draws.
    :param min_curvature: floor of the Hessian diagonal in the Laplace approximation.
    :param param_state: param-store state for parameters declared with bare ``pyro.param``.
    :param max_points: the per-point groups (responsibilities, pointwise log-likelihood, observed data) hold a seeded
        subsample (``seed``) of this many points where there are more, with the rows' original numbers as the ``obs``
        coordinate, and the attributes ``mixzoo_points`` (how many) and ``mixzoo_points_of`` (of how many); the
        Laplace curvature counts every point. ``None``: every point.
    :raises MixzooInputError: on data :func:`mixzoo.fit` would refuse (not numeric, not 2-D, NaN/inf, or
        another number of features than the model's).
    """
    if not isinstance(n_draws, int) or n_draws < 0:
        raise MixzooInputError(f"n_draws must be a non-negative integer, got {n_draws!r}.")
    mods = modules_of(model, guide)
    device = next((p.device for m in mods for p in m.parameters()), torch.device("cpu"))
    xt = as_input(x, model, guide)
    n_all = xt.shape[0]
    if max_points is not None and (not isinstance(max_points, int) or max_points < 1):
        raise MixzooInputError(f"max_points must be a positive integer or None, got {max_points!r}.")
    rows = None if max_points is None else subsample_rows(n_all, max_points, seed)
    xt = take_rows(xt, rows).to(device)
    n, d = xt.shape
    proba = cluster_proba(model, guide, xt, param_state=param_state).cpu().double().numpy()
    k = proba.shape[1]

    posterior: dict[str, np.ndarray] = _param_arrays(model, guide, xt)
    dims: dict[str, list[str]] = {}
    for name, value in posterior.items():
        dims[f"posterior/{name}"] = ["chain", "draw"] + [f"{name}_dim_{i}" for i in range(value.ndim - 2)]

    method, held, shrink = "point", 0, 1.0
    global_draws = _guide_global_draws(guide, xt, n_draws, param_state) if n_draws else {}
    if global_draws:
        method = "guide"
        loglik = _sampled_loglik(model, guide, xt, global_draws, param_state)
        posterior = {name: np.repeat(v, n_draws, axis=1) for name, v in posterior.items()}  # constant across draws
        for name, v in global_draws.items():
            arr = v.detach().cpu().double().numpy()[None]
            posterior[name] = arr
            dims[f"posterior/{name}"] = ["chain", "draw"] + [f"{name}_dim_{i}" for i in range(arr.ndim - 2)]
    elif n_draws and any(p.requires_grad for m in mods for p in m.parameters()):
        method = "laplace"
        with isolated_param_store(param_state):
            loglik, posterior, held, shrink = _laplace_loglik(
                model, guide, xt, n_draws, seed, min_curvature, weight=n_all / n
            )
    else:
        loglik = log_likelihood(model, guide, xt, param_state=param_state).cpu().double().numpy()[None]

    if not np.isfinite(loglik).all():
        warnings.warn(
            "some pointwise log-likelihood draws are not finite; LOO estimates will be unreliable.",
            RuntimeWarning,
            stacklevel=2,
        )
    groups = {
        "posterior": posterior,
        "cluster_posterior": {"responsibility": proba[None, None]},
        "log_likelihood": {"x": loglik[None]},
        "observed_data": {"x": xt.cpu().double().numpy()},
    }
    dims.update(
        {
            "cluster_posterior/responsibility": ["chain", "draw", "obs", "cluster"],
            "log_likelihood/x": ["chain", "draw", "obs"],
            "observed_data/x": ["obs", "feature"],
        }
    )
    coords = {"obs": np.arange(n) if rows is None else rows, "cluster": np.arange(k), "feature": np.arange(d)}
    attrs = {"mixzoo_loglik_draws": method, "mixzoo_n_draws": int(loglik.shape[0]), "mixzoo_laplace_held_fixed": held,
             "mixzoo_laplace_scale": shrink, "mixzoo_points": int(n), "mixzoo_points_of": int(n_all)}  # fmt: skip
    return to_arviz(groups, dims, coords, attrs)
