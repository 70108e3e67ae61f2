r"""The posterior of a mixture's parameters by the No-U-Turn sampler, with the cluster site summed out.

With a proper prior :math:`p(\theta)` on the model's unconstrained parameters (the model states it:
:class:`~mixzoo.contract.ParameterPriors`), the posterior of the globals given data :math:`x_{1:N}` has the
potential energy

.. math::
    U(\theta) = -\log p(\theta) - \sum_{n=1}^N \log \sum_{k=1}^K p(x_n, y_n = k \mid \theta),

in which :math:`y` is enumerated exactly (the model's stated table :math:`\log p(x_n, y_n = k)` where it states one,
else its enumerated trace, ``mixzoo.inference.enumeration``): the sampler moves only the continuous parameters,
as Pyro's NUTS does for a model whose discrete sites are marked for enumeration. Each chain is Pyro's
:class:`~pyro.infer.mcmc.NUTS` (Hoffman and Gelman 2014) with step size and diagonal mass matrix adapted during the
warm-up, started at the fitted parameters (the maximum-likelihood or EM fit; chains after the first are jittered),
so that every chain explores the mode the fit found, in coordinates whitened by the Hessian of :math:`U` there
(:meth:`MarginalPotential.whiten`): the Laplace approximation as a preconditioner, so that the adapted step suits
every direction from the first draw. Chains run in separate processes where there are cores for
them.

The draws are not relabelled here: the likelihood is invariant to permuting the clusters, so a chain may swap labels
between draws. :mod:`mixzoo.analysis.draws` matches each draw to the fit's clusters before anything is summarized.

**Which models.** A model with an enumerable ``y`` as its only latent, its parameters as module parameters with
stated priors, and at most :data:`MAX_ENTRIES` parameter entries (beyond that NUTS takes long to adapt, and the
network families have no meaningful prior on their weights); :func:`nuts_refusal` says why a model is refused.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer.mcmc import MCMC, NUTS
from torch import nn
from torch.func import functional_call

from ..contract import ModelCapabilities
from .enumeration import table_log_joint

__all__ = ["SAMPLERS", "NUTS_DEFAULTS", "MAX_ENTRIES", "MODE_GAP", "MAX_TREE_DEPTH", "PosteriorSamples", "MarginalPotential", "nuts_refusal", "sample_posterior"]

SAMPLERS: tuple[str, ...] = ("nuts",)
"""The samplers ``mixzoo fit --sampler`` takes."""

NUTS_DEFAULTS: dict[str, int] = {"chains": 4, "warmup": 300, "draws": 300}
"""Chains, warm-up steps and kept draws per chain of ``--sampler nuts`` (section ``nuts`` of docs/benchmarks.md)."""

MAX_ENTRIES = 2000
"""Most parameter entries a model may have for NUTS."""

MAX_TREE_DEPTH = 8
"""Largest NUTS tree depth (at most :math:`2^8 - 1` leapfrog steps per draw)."""

MODE_GAP = 5.0
"""Largest difference of the chains' mean potential energies (nats) taken as one mode (:func:`sample_posterior`)."""

INIT_JITTER = 0.1
"""Standard deviation of the noise, in whitened units (one posterior standard deviation of the Laplace
approximation), added to the fit to start the chains after the first."""


class _NoGuide:
    """The empty guide, as ``table_log_joint`` reads it (``mixzoo.guides.EmptyGuide`` lives in a layer above)."""

    samples_y = False

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Table(nn.Module):
    """``forward(x)`` is the model's (N, K) table of :math:`\\log p(x_n, y_n = k)`, for ``functional_call``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return table_log_joint(self.model, _NoGuide(), x)


def log_joint_at(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The (N, K) table :math:`\\log p(x_n, y_n = k \\mid \\theta)` with the model's parameters replaced by ``params``
    (keyed as ``named_parameters()`` names them), without touching the model's own."""
    return functional_call(_Table(model), {f"model.{k}": v for k, v in params.items()}, (x,))


class MarginalPotential:
    r""":math:`U(\theta)` of the module docstring for ``model`` on ``x``, as a picklable callable of one flat vector.

    The sampler moves :math:`u` with :math:`\theta = \hat\theta + W u` (``center`` :math:`\hat\theta`, the fitted
    parameters flattened in ``named_parameters()`` order, and ``whitening`` :math:`W`, the identity by default; a
    constant Jacobian, so the potential needs no correction): :meth:`whiten` sets :math:`W` so that :math:`u` has unit
    curvature at the fit, the Laplace approximation as a preconditioner.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor) -> None:
        self.model, self.x = model, x
        self.shapes = {name: p.shape for name, p in model.named_parameters()}
        self.center = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        self.whitening = torch.eye(self.center.numel(), dtype=self.center.dtype)
        self._priors: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_priors": None}

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The parameters (by name) of flat vector(s) ``theta`` (..., E)."""
        out, i = {}, 0
        for name, shape in self.shapes.items():
            n = shape.numel()
            out[name] = theta[..., i : i + n].reshape(*theta.shape[:-1], *shape)
            i += n
        return out

    def theta(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`\\hat\theta + W u` for (..., E) ``u``."""
        return self.center + u @ self.whitening.T

    def energy(self, theta: torch.Tensor) -> torch.Tensor:
        """:math:`U(\theta)` of one flat parameter vector."""
        if self._priors is None:
            self._priors = self.model.parameter_priors()
        params = self.unflatten(theta)
        log_prior = sum(self._priors[name].log_prob(v) for name, v in params.items())
        table = log_joint_at(self.model, params, self.x)
        return -(log_prior + torch.logsumexp(table, dim=-1).sum())

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.energy(self.theta(params["u"]))

    def whiten(self, min_precision: float) -> None:
        r"""Set :math:`W = V \Lambda^{-1/2}` from the eigendecomposition :math:`V \Lambda V^\top` of the Hessian of
        :math:`U` at the center (one Hessian-vector product per entry), with eigenvalues floored at
        ``min_precision`` (a flat or saddle direction then moves on the prior's scale)."""
        theta = self.center.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.energy(theta), theta, create_graph=True)
        rows = [torch.autograd.grad(grad[i], theta, retain_graph=True)[0] for i in range(theta.numel())]
        hessian = torch.stack(rows).detach().double()
        hessian = (hessian + hessian.T) / 2
        values, vectors = torch.linalg.eigh(hessian)
        values = values.clamp(min=min_precision)
        self.whitening = (vectors / values.sqrt()).to(self.center.dtype)


def nuts_refusal(model: nn.Module | type) -> str | None:
    """Why NUTS cannot sample the posterior of ``model`` (an instance, or a class: what its declarations say, before
    any data are read), or ``None`` when it can."""
    caps = ModelCapabilities.of(model)
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    if not caps.enumerable_y:
        return f"{name} has per-point latents besides y ({', '.join(caps.local_latents)}), which NUTS would have to sample"
    if not caps.normalized:
        return f"{name} is known only up to its normalizers, so its likelihood (and posterior) cannot be evaluated"
    if not caps.parameter_priors:
        return (f"{name} states no prior for its parameters: define parameter_priors() returning a proper "
                "distribution for each of named_parameters()")  # fmt: skip
    if isinstance(model, type):
        return None
    entries = sum(p.numel() for p in model.parameters())
    if entries > MAX_ENTRIES:
        return (f"{name} has {entries} parameter entries here, more than the {MAX_ENTRIES} NUTS is offered for "
                "(fewer clusters or features, a diagonal covariance, or --pca help)")  # fmt: skip
    priors = model.parameter_priors()
    missing = [n for n, _ in model.named_parameters() if n not in priors]
    if missing:
        return f"{name}.parameter_priors() names no prior for {', '.join(missing)}"
    return None


@dataclass
class PosteriorSamples:
    """Draws of a model's unconstrained parameters, chain by chain, before relabelling.

    :param params: name -> (chains, draws, ...) tensor, keyed as ``named_parameters()``.
    :param divergences: divergent transitions after warm-up, per chain.
    :param step_sizes: adapted step size, per chain.
    :param start_gain: how much lower the potential energy at the chains' start is than at the fit.
    :param rounds: runs of the chains it took to make them agree on a mode (:func:`sample_posterior`).
    :param seconds: wall-clock time of all chains.
    """

    params: dict[str, torch.Tensor]
    divergences: list[int] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    seconds: float = 0.0
    start_gain: float = 0.0
    rounds: int = 1

    @property
    def chains(self) -> int:
        return next(iter(self.params.values())).shape[0]

    @property
    def draws(self) -> int:
        return next(iter(self.params.values())).shape[1]

    def draw(self, c: int, s: int) -> dict[str, torch.Tensor]:
        """The parameters of draw ``s`` of chain ``c``."""
        return {name: v[c, s] for name, v in self.params.items()}


def _run_chain(job: tuple[MarginalPotential, dict[str, torch.Tensor], int, int, int, int]) -> tuple[dict[str, np.ndarray], int, float]:
    """One chain (in this process or a worker): its draws, divergences and adapted step size."""
    potential, init, warmup, draws, seed, threads = job
    torch.set_num_threads(threads)
    pyro.set_rng_seed(seed)
    kernel = NUTS(potential_fn=potential, adapt_step_size=True, adapt_mass_matrix=True, max_tree_depth=MAX_TREE_DEPTH)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params=init, disable_progbar=True)
    mcmc.run()
    samples = {name: v.detach().numpy() for name, v in mcmc.get_samples().items()}
    divergent = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
    return samples, len(divergent), float(kernel.step_size)


def sample_posterior(
    model: nn.Module,
    x: torch.Tensor,
    *,
    chains: int = 4,
    warmup: int = 300,
    draws: int = 300,
    seed: int = 0,
    processes: int | None = None,
    rounds: int = 3,
) -> PosteriorSamples:
    """Sample the posterior of ``model``'s parameters on ``x`` with NUTS, ``chains`` chains from its current
    (fitted) parameters.

    :param rounds: most runs of the chains. A mixture's posterior can have several modes, and a chain can leave the
        fit's mode for a better one while the others stay: where the chains' mean potential energies differ by more
        than :data:`~mixzoo.inference.nuts.MODE_GAP`, all chains run again from the mode nearest the best draw (found by L-BFGS, and whitened
        there), up to ``rounds`` times; the last run's draws are returned, so R-hat says whether they agree.
    :param processes: worker processes (one per chain, at most one per core; 1 runs the chains here, one after
        another). Each worker gets an equal share of the cores as torch threads. Workers are started afresh
        (``spawn``) and import the main module again, which runs a script's top level unless it is guarded by
        ``if __name__ == "__main__":``; so ``None`` uses them only where that is known to be safe (``mixzoo fit``,
        Jupyter) and runs the chains here otherwise.
    :raises ValueError: when :func:`nuts_refusal` refuses the model, or for non-positive counts.
    """
    why = nuts_refusal(model)
    if why is not None:
        raise ValueError(why)
    for name, v in (("chains", chains), ("warmup", warmup), ("draws", draws)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    model = copy.deepcopy(model).cpu()  # the chains run on the CPU; the caller's model stays where it is
    x = x.detach().cpu()
    start = time.perf_counter()
    potential = MarginalPotential(model, x)
    priors = model.parameter_priors()
    min_precision = min(float(1 / priors[name].variance.max()) for name in potential.shapes)
    potential.whiten(min_precision)
    cores = os.cpu_count() or 1
    if processes is None:
        processes = cores if _spawn_safe() else 1
    workers = max(1, min(int(processes), chains, cores))
    threads = max(1, cores // workers)
    gen = torch.Generator().manual_seed(seed)

    def run(warm: int, keep: int, offset: int) -> list[tuple[dict[str, np.ndarray], int, float]]:
        size = potential.center.numel()
        inits = [{"u": INIT_JITTER * torch.randn(size, generator=gen, dtype=potential.center.dtype) * (c > 0)}
                 for c in range(chains)]  # fmt: skip
        jobs = [(potential, inits[c], warm, keep, seed * 1000 + offset + c, threads) for c in range(chains)]
        if workers == 1:
            return [_run_chain(job) for job in jobs]
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            return list(pool.map(_run_chain, jobs))

    fitted_energy = float(potential.energy(potential.center).detach())
    for attempt in range(rounds):
        results = run(warmup, draws, 100 * attempt)
        u = torch.from_numpy(np.stack([r[0]["u"] for r in results]))  # (chains, draws, E)
        with torch.no_grad():
            theta = potential.theta(u)
            energies = torch.stack([torch.stack([potential.energy(t) for t in chain]) for chain in theta])
        means = energies.mean(1)
        if float(means.max() - means.min()) <= MODE_GAP or attempt == rounds - 1:
            break
        best = energies.argmin()  # the chains found modes of unequal height: start them all at the best one's
        potential.center = _descend(potential, theta.reshape(-1, theta.shape[-1])[best])
        potential.whiten(min_precision)
    with torch.no_grad():
        params = {k: v.clone() for k, v in potential.unflatten(theta).items()}
        gain = fitted_energy - float(potential.energy(potential.center))
    return PosteriorSamples(params, [r[1] for r in results], [r[2] for r in results], seconds=time.perf_counter() - start,
                            start_gain=gain, rounds=attempt + 1)  # fmt: skip


SPAWN_SAFE_MAINS = ("mixzoo", "mixzoo.__main__", "ipykernel_launcher", "ipykernel.__main__")
"""Main modules that guard their top level, so that spawned workers can import them again."""


def _spawn_safe() -> bool:
    """Whether worker processes may be spawned: the main module is mixzoo's command line or a Jupyter kernel."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in SPAWN_SAFE_MAINS:
        return True
    path = getattr(main, "__file__", None)
    return path is not None and os.path.basename(path) == "mixzoo"  # the console script


def _descend(potential: MarginalPotential, theta: torch.Tensor, steps: int = 100) -> torch.Tensor:
    """The local minimum of :math:`U` nearest ``theta`` (L-BFGS): the mode the main chains start from."""
    theta = theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        energy = potential.energy(theta)
        energy.backward()
        return energy

    opt.step(closure)
    return theta.detach()
