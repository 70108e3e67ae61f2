"""Command-line interface: ``mixzoo models``, ``fit``, ``select``, ``evaluate``, ``predict``; parsing and printing only.

The flags of a model family come from its options dataclass (:mod:`mixzoo.options`):
``mixzoo fit --model NAME --help`` shows exactly that family's options with their
defaults. With ``--json`` the last line of stdout is one JSON object. Bad input ends
with one ``mixzoo: error: ...`` line on stderr and exit code 2; a diverged training run
exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..analysis.calibration import CALIBRATIONS
from ..data import DATASETS, SCALES
from ..data.shape import DataShape
from ..errors import MixzooInputError, TrainingDivergedError
from ..guides.registry import GUIDES, GuideSpec, get_guide
from ..inference.nuts import NUTS_DEFAULTS, SAMPLERS
from ..inference.registry import ALGORITHMS, Algorithm, get_algorithm
from ..models import MODELS, Family, get_family
from ..models.family import Inference
from ..options import OptionInfo, Options
from .config import TRAINING_FIELDS, FitConfig, family_of
from .transfer import CLASSIFIERS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``mixzoo: error:`` line and exit 2, like every other input error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message: str) -> Any:
        raise MixzooInputError(f"{message} (see `{self.prog} --help`)")


_METRICS = ("acc", "nmi", "ari", "purity", "expected_misclassified", "misclassified", "calibration_ratio", "ece",
            "clusters_used", "seconds")  # fmt: skip

_FIT_EXAMPLES = """examples:
  mixzoo fit --model gmm --data digits                      # the default recipe of a family
  mixzoo fit --model gmm --data digits --covariance full    # a family option
  mixzoo fit --model flow-mixture --guide encoder --data two-circles --labels 32
  mixzoo fit --model my_model.py:MyMixture --data pinwheel  # your own Pyro model class
  mixzoo fit --model gmvae --help                           # that family's options
"""


def _option_help(info: OptionInfo) -> str:
    default = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else info.default
    where = info.applies_to()
    return f"{info.doc} (default: {default if default != '' else 'none'}{'; with ' + where if where else ''})"


def _add_options(parser: argparse.ArgumentParser, title: str, options: type[Options], prefix: str) -> None:
    infos = options.infos()
    group = parser.add_argument_group(title + ("" if infos else " (none)"))
    for info in infos:
        kwargs: dict[str, Any] = {"dest": f"{prefix}_{info.name}", "default": None, "help": _option_help(info)}
        if info.kind is bool:
            group.add_argument(info.flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif info.kind is tuple:
            group.add_argument(info.flag, metavar="N,N", **kwargs)
        else:
            metavar = None if info.choices else {int: "N", float: "F"}.get(info.kind, "TEXT")
            group.add_argument(info.flag, type=info.kind, choices=info.choices, metavar=metavar, **kwargs)


def _add_family_options(parser: argparse.ArgumentParser, family: Family) -> None:
    _add_options(parser, f"options of model {family.name}", family.options, "opt")


def _add_inference_options(parser: argparse.ArgumentParser, guide: GuideSpec, loss: Algorithm) -> None:
    _add_options(parser, f"options of guide {guide.name}", guide.options, "gopt")
    _add_options(parser, f"options of loss {loss.name}", loss.options, "lopt")


def _add_data_args(parser: argparse.ArgumentParser, default: str | None = "digits") -> None:
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data",
        default=default,
        help=f"one of: {', '.join(DATASETS)}" + (f" (default: {default})" if default else " (default: the run's own)"),
    )
    g.add_argument("--data-dir", default=None, help="directory of MNIST idx files (or set MIXZOO_DATA)")
    g.add_argument("--label-column", default=None, help="a data table's column of labels (for evaluation only)")
    g.add_argument(
        "--columns", default=None, help="a data table's feature columns, e.g. a,b,c (default: every numeric one)"
    )
    if default is None:
        return
    g.add_argument(
        "--pca",
        type=int,
        default=None,
        help="reduce the data to D principal components; 0 keeps every feature (default: the model's plan for the data: the density families take 50 above 100 features)",
    )
    g.add_argument(
        "--scale",
        nargs="?",
        const="features",
        default=None,
        choices=SCALES,
        metavar="{features,common,none}",
        help="rescale the features: --scale alone standardises each one; common: one spread for all; none: as they "
        "are (default, so that units do not matter: features for a table, common for images and integer data, none "
        "for a model file)",
    )
    g.add_argument(
        "--dequantize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="quantized data (integer images, a file of integers): (level + uniform noise) / levels, in [0, 1) "
        "(default: the density families do, found by the data taking few evenly spaced values)",
    )
    g.add_argument("--subsample", type=int, default=None, help="use N randomly chosen points")


def _clusters(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or auto, got {text!r}") from None


def _add_training_args(parser: argparse.ArgumentParser, family: Family, guide: GuideSpec, loss: Algorithm) -> None:
    small = DataShape(1000, 2)
    plan = family.plan(family.options(), small, Inference(guide.name, loss.name, loss.closed_form(family.capabilities)))
    recipe = plan.training
    g = parser.add_argument_group(
        f"training (defaults: the {family.name} plan for the data; shown for a 2-D table of 1000 points)"
    )
    guides = ", ".join(family.guides())
    g.add_argument(
        "--guide",
        default=None,
        help=f"one of: {guides} (default: {family.default_guide}); `mixzoo models` shows which losses each serves",
    )
    g.add_argument(
        "--loss",
        default=None,
        help=f"one of: {', '.join(ALGORITHMS)} where the guide allows (default: {family.default_loss})",
    )
    g.add_argument("--clusters", type=_clusters, default=None, metavar="K",
                   help="number of clusters K, or auto: chosen by `mixzoo select`'s criterion over K = 1..9 (and the "
                   "structure, unless given) first (default: the data's classes)")  # fmt: skip
    g.add_argument("--epochs", type=int, default=None, help=f"training epochs (default: {recipe.epochs})")
    g.add_argument(
        "--batch-size", type=int, default=None, help=f"minibatch size (default: {recipe.batch_size or 'all points'})"
    )
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam learning rate (default: {recipe.lr:g})"
        if recipe.lr
        else f"Adam learning rate of the gradient losses (the default loss {family.default_loss} takes none)",
    )
    g.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        help=f"multiply the learning rate by this each epoch (default: {recipe.lr_decay or 'none'})",
    )
    g.add_argument(
        "--tol",
        type=float,
        default=None,
        help=f"stop when the epoch loss changes by less than this (relative) for 3 epochs (closed-form EM: 1); 0: never (default: {recipe.tol or 0:g})",
    )
    g.add_argument(
        "--n-init",
        type=int,
        default=None,
        help=f"restarts; the one with {plan.restart_rule} is kept (default: {recipe.n_init})",
    )
    g.add_argument("--labels", type=int, default=None, help="semi-supervised: reveal N labels (balanced, seeded)")
    g.add_argument(
        "--calibration",
        choices=CALIBRATIONS,
        default=None,
        help="make the reported probabilities honest: replicate refits once on a bootstrap replicate and divides the "
        "log probabilities by the temperature that fits its labels (with --labels, the revealed labels fit it); none "
        "reports the fit's own (default: replicate; none with --sampler nuts)",
    )
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=None,
        help="after the fit, sample the posterior of the model's parameters (nuts: Pyro's NUTS with y summed out, "
        "for models that state priors: gmm, student-t) and report the posterior predictive probabilities, R-hat and "
        "ESS (default: none, the fit's point estimate)",
    )
    g.add_argument("--chains", type=int, default=None, help=f"NUTS chains (default: {NUTS_DEFAULTS['chains']})")
    g.add_argument(
        "--warmup", type=int, default=None, help=f"NUTS warm-up steps per chain (default: {NUTS_DEFAULTS['warmup']})"
    )
    g.add_argument(
        "--draws", type=int, default=None, help=f"NUTS draws kept per chain (default: {NUTS_DEFAULTS['draws']})"
    )
    g.add_argument(
        "--retries", type=int, default=0, help="retry a diverged epoch with half the learning rate N times (default: 0)"
    )
    g.add_argument(
        "--pretrain-classes",
        default=None,
        help="deep transfer: train a classifier on these classes (e.g. 0,1,2,3,4), cluster the others on its features",
    )
    g.add_argument(
        "--cluster-classes",
        default=None,
        help="deep transfer: the held-out classes to cluster, e.g. 5,6 (default: all of them)",
    )
    g.add_argument(
        "--classifier-epochs", type=int, default=None, help="deep transfer: classifier training epochs (default: 5)"
    )
    g.add_argument(
        "--classifier",
        default=None,
        choices=CLASSIFIERS,
        help="deep transfer: the classifier giving the features, an MLP or a CNN (conv blocks with max-pooling; images only) (default: cnn for images, mlp otherwise)",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of everything random (default: 0)")
    g.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    g.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 for small fits, all cores for large ones)"
    )


def _fit_parser(prog: str, family: Family, guide: GuideSpec, loss: Algorithm) -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog, description="Fit a model to a data set and report clustering metrics.",
        epilog=_FIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--model", default="gmm", help=f"one of: {', '.join(MODELS)}, or FILE.py:CLASS / module:CLASS (default: gmm)"
    )
    _add_data_args(p)
    _add_training_args(p, family, guide, loss)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None, help="run directory for checkpoint, config, metrics, summary and plots")
    o.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    o.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        help="write a resumable training state into --out every N epochs (default with --out: 1; it goes when the run ends)",
    )
    o.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted run in DIR (its own config)")
    o.add_argument(
        "--no-progress",
        action="store_true",
        help="report no progress (by default: a bar on a terminal, else a line every few seconds)",
    )
    o.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")
    _add_family_options(p, family)
    _add_inference_options(p, guide, loss)
    return p


def _select_parser(prog: str, family: Family, guide: GuideSpec, loss: Algorithm) -> argparse.ArgumentParser:
    from ..models.family import CRITERIA

    p = _Parser(
        prog=prog,
        description="Choose the number of clusters, and the model's structure (gmm: the covariance), by BIC, ICL, "
        "held-out log-likelihood or LOO.",
    )
    p.add_argument("--model", default="gmm", help=f"one of: {', '.join(MODELS)}, or FILE.py:CLASS (default: gmm)")
    _add_data_args(p)
    p.add_argument("--clusters", default="1..9", help="candidate K: a range 1..9 or a list 2,4,8 (default: 1..9)")
    offered = ", ".join(family.criteria) or "none"
    p.add_argument("--criterion", default=None, choices=CRITERIA,
                   help=f"what ranks the fits (default: {family.criteria[0] if family.criteria else '-'}; "
                   f"{family.name} offers {offered})")  # fmt: skip
    p.add_argument("--heldout", type=float, default=0.2, help="fraction of points held out (default: 0.2)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the family's recipe)")
    p.add_argument("--no-loo", action="store_true", help="skip the PSIS-LOO column")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for selection.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing selection in --out")
    p.add_argument("--json", action="store_true", help="print the table and choice as one JSON object last")
    _add_family_options(p, family)
    return p


def _evaluate_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Cluster data with a saved run and report metrics.")
    p.add_argument("--run", required=True, help="run directory written by `mixzoo fit --out`")
    p.add_argument("--model", default=None, help="for a run of your own model: the same FILE.py:CLASS")
    _add_data_args(p, default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--json", action="store_true")
    return p


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    cal = record.get("calibration") or {}
    tempered = f", temperature {record['temperature']:.3g} ({cal.get('method')})" if cal.get("method", "none") != "none" else ""
    sampled = (f", posterior by NUTS ({record['chains']} chains x {record['draws']} draws, R-hat max "
               f"{record['r_hat_max']:.3f}, ESS min {record['ess_min']:.0f})" if record.get("sampler") else "")  # fmt: skip
    print(
        f"{record['model']} ({record['guide']}, {record['loss']}) on {record['data']}: n={record['n']} K={record['clusters']}"
        + tempered + sampled
    )
    print(_table([list(_METRICS), [_fmt(record.get(k)) for k in _METRICS]]))
    if as_json:
        print(json.dumps(record))


def _models_record() -> dict[str, Any]:
    """Families with their capabilities, options and valid guide x loss table; guides and losses with theirs."""
    families = {}
    for f in MODELS.values():
        table = f.inference_table()
        families[f.name] = {
            "description": f.description,
            "cite": f.cite,
            "capabilities": f.capabilities.names(),
            "default": {"guide": f.default_guide, "loss": f.default_loss},
            "options": [i.name for i in f.options.infos()],
            "valid": {
                g: [loss for loss, why in row.items() if why is None]
                for g, row in table.items()
                if any(w is None for w in row.values())
            },
            "refused": {g: {loss: why for loss, why in row.items() if why is not None} for g, row in table.items()},
        }
    guides = {
        g.name: {"description": g.description, "options": [i.name for i in g.options.infos()], "family": g.family}
        for g in GUIDES.values()
    }
    losses = {
        a.name: {"description": a.description, "cite": a.cite, "options": [i.name for i in a.options.infos()]}
        for a in ALGORITHMS.values()
    }
    return {"models": families, "guides": guides, "losses": losses}


def _cmd_models(as_json: bool) -> None:
    record = _models_record()
    if as_json:
        print(json.dumps(record))
        return
    rows = [["model", "paper", "default", "options"]]
    for f in MODELS.values():
        rows.append(
            [f.name, f.cite, f"{f.default_guide}/{f.default_loss}", " ".join(i.flag for i in f.options.infos())]
        )
    print(_table(rows))
    print()
    for f in MODELS.values():
        print(f"{f.name}: {f.description}")
    losses = list(ALGORITHMS)
    print("\nWhich guide trains each model under which loss (+ serves, . refused; `mixzoo models --json` says why):")
    for f in MODELS.values():
        table = f.inference_table()
        rows = [[f.name, *losses]]
        rows += [
            [f"  {g}", *("+" if row[loss] is None else "." for loss in losses)]
            for g, row in table.items()
            if any(why is None for why in row.values())
        ]
        print(_table(rows))
    print()
    print(_table([["guide", "what it is"], *([g.name, g.description] for g in GUIDES.values())]))
    print()
    print(_table([["loss", "what it is"], *([a.name, a.description] for a in ALGORITHMS.values())]))
    print("\n`mixzoo fit --model NAME [--guide G] [--loss L] --help` shows the options of a model, a guide and a loss.")


def _columns(text: str | None) -> list[str] | None:
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _options(a: argparse.Namespace, prefix: str) -> dict[str, Any]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in vars(a).items() if k.startswith(prefix + "_") and v is not None}


def _parse(make: Any, prog: str, args: list[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """Parse with the parser of the family named by ``--model``, the guide of ``--guide`` and the loss of ``--loss``
    (their options become flags)."""
    pre = _Parser(add_help=False)
    pre.add_argument("--model", default="gmm")
    pre.add_argument("--guide", default=None)
    pre.add_argument("--loss", default=None)
    pre.add_argument("--resume", default=None)
    known, _ = pre.parse_known_args(args)
    family = family_of(known.model) if known.resume is None else get_family("gmm")
    guide = get_guide(known.guide or family.default_guide)
    loss = get_algorithm(known.loss or family.default_loss)
    parser = make(prog, family, guide, loss)
    a, extra = parser.parse_known_args(args)
    if extra:
        raise MixzooInputError(_unknown_flags(extra, family, guide, loss))
    return a, parser


def _unknown_flags(extra: list[str], family: Family, guide: GuideSpec, loss: Algorithm) -> str:
    flag = next((e.split("=")[0] for e in extra if e.startswith("--")), extra[0])
    owners = [
        (kind, o.name, current)
        for kind, registry, current in (("model", MODELS, family.name), ("guide", GUIDES, guide.name), ("loss", ALGORITHMS, loss.name))
        for o in registry.values()
        if any(i.flag == flag or "--no-" + i.flag[2:] == flag for i in o.options.infos())
    ]  # fmt: skip
    if owners:
        kind, _, current = owners[0]
        names = ", ".join(name for k, name, _ in owners if k == kind)
        return f"{flag} is an option of {kind} {names}; it does not apply to {kind} {current!r}."
    return f"unrecognized argument(s): {' '.join(extra)} (see `mixzoo fit --model {family.name} --help`)."


_RESUME_KEEPS = {"resume", "json", "no_progress"}


def _cmd_fit(args: list[str]) -> None:
    from ..inference.data_parallel import init_from_env, launched_by_torchrun, leave

    a, parser = _parse(_fit_parser, "mixzoo fit", args)
    distributed = launched_by_torchrun()
    if not distributed:
        return _fit_one(a, parser, distributed=False)
    init_from_env(a.device)
    try:
        _fit_one(a, parser, distributed=True)
    except BaseException:
        leave(wait=False)  # the other processes may never get here
        raise
    leave()


def _fit_one(a: argparse.Namespace, parser: argparse.ArgumentParser, distributed: bool) -> None:
    from .runs import resume_config, run_fit

    main = not distributed or int(os.environ.get("RANK", "0")) == 0
    progress = not a.no_progress and main  # a bar on a terminal, a line every few seconds in a log
    if a.resume is not None:
        defaults = parser.parse_args([])
        changed = sorted(k for k, v in vars(a).items() if k not in _RESUME_KEEPS and v != getattr(defaults, k, v))
        if changed:
            flags = ", ".join("--" + k.removeprefix("opt_").replace("_", "-") for k in changed)
            raise MixzooInputError(f"--resume continues the run with its saved config; drop {flags}.")
        with _resumable(a.resume):
            record = run_fit(
                resume_config(a.resume), out=a.resume, resume=True, progress=progress, distributed=distributed
            )
    else:
        settings = {k: getattr(a, k) for k in (*TRAINING_FIELDS, "guide", "loss", "clusters", "labels", "calibration", "sampler", "chains", "warmup", "draws", "retries",
                    "pretrain_classes", "cluster_classes", "classifier_epochs", "classifier", "seed", "device", "checkpoint_every", "threads")}  # fmt: skip
        if a.out and settings["checkpoint_every"] is None:
            settings["checkpoint_every"] = 1  # an interrupted run with --out can always be resumed
        config = FitConfig(model=a.model, data=a.data, data_dir=a.data_dir, pca=a.pca, scale=a.scale, label_column=a.label_column,
                           columns=_columns(a.columns),
                           dequantize=a.dequantize, subsample=a.subsample, options=_options(a, "opt"),
                           guide_options=_options(a, "gopt"), loss_options=_options(a, "lopt"), **settings)  # fmt: skip
        with _resumable(a.out):
            record = run_fit(config, out=a.out, overwrite=a.overwrite, progress=progress, distributed=distributed)
    if main:
        _print_record(record, a.json)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a fit, with the run directory it can be resumed from (if any)."""

    def __init__(self, run_dir: str | None) -> None:
        super().__init__(run_dir)
        self.run_dir = run_dir


@contextlib.contextmanager
def _resumable(run_dir: str | None) -> Iterator[None]:
    """Turn SIGTERM into an interrupt, and an interrupt into :class:`_Interrupted` naming ``run_dir``.

    The training state on disk is that of the last finished epoch (written atomically), so
    nothing needs saving here: the run resumes from it.
    """

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = (
        signal.signal(signal.SIGTERM, terminate) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        yield
    except KeyboardInterrupt:
        raise _Interrupted(run_dir) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupted_message(err: KeyboardInterrupt) -> str:
    from .restarts import BEST_RESTART, TRAIN_STATE

    run_dir = getattr(err, "run_dir", None)
    if run_dir and any((Path(run_dir) / name).is_file() for name in (TRAIN_STATE, BEST_RESTART)):
        return f"mixzoo: interrupted; the last finished epoch is saved: continue with `mixzoo fit --resume {shlex.quote(run_dir)}`."
    if run_dir:
        return f"mixzoo: interrupted before the first epoch ended; nothing was saved in {run_dir} to resume."
    return "mixzoo: interrupted. With --out DIR a run saves every epoch and continues with `mixzoo fit --resume DIR`."


def _cmd_evaluate(args: list[str]) -> None:
    from .runs import run_evaluate

    a = _evaluate_parser("mixzoo evaluate").parse_args(args)
    record = run_evaluate(a.run, data=a.data, data_dir=a.data_dir, device=a.device, model=a.model,
                          label_column=a.label_column, columns=_columns(a.columns))  # fmt: skip
    _print_record(record, a.json)


def _predict_parser(prog: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Label new points with a fitted run: cluster, confidence, p_0..p_{K-1} per row.")
    p.add_argument("--run", required=True, help="run directory written by `mixzoo fit --out`")
    p.add_argument(
        "--data", required=True, help="data file (.csv, .tsv, .npy, .npz, .parquet) with the training columns"
    )
    p.add_argument("--data-dir", default=None, help="directory of MNIST idx files, for built-in image data")
    p.add_argument("--out", default=None, help="output file (.csv, .parquet or .npy); CSV on stdout without it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--model", default=None, help="for a run of your own model: the same FILE.py:CLASS")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    return p


def _cmd_predict(args: list[str]) -> None:
    from .predict import check_output, predict_run, write_predictions

    a = _predict_parser("mixzoo predict").parse_args(args)
    check_output(a.out, a.overwrite)
    proba = predict_run(a.run, a.data, model=a.model, device=a.device, data_dir=a.data_dir)
    write_predictions(proba, a.out, overwrite=a.overwrite)
    if a.out is not None:
        print(f"wrote {len(proba)} predictions ({proba.shape[1]} clusters) to {a.out}", file=sys.stderr)


def _cmd_select(args: list[str]) -> None:
    from ..data import load_dataset
    from .run_dir import prepare_run_dir, write_json
    from .selection import parse_clusters, select_clusters

    a, _ = _parse(_select_parser, "mixzoo select", args)
    ks = parse_clusters(a.clusters)
    config = FitConfig(model=a.model, options=_options(a, "opt"), epochs=a.epochs).resolved()
    run_dir = prepare_run_dir(a.out, a.overwrite) if a.out else None
    d = load_dataset(a.data, data_dir=a.data_dir, scale=a.scale, pca=a.pca or None, subsample=a.subsample, seed=a.seed,
                     dequantize=bool(a.dequantize), label_column=a.label_column, columns=_columns(a.columns))  # fmt: skip
    sel = select_clusters(
        d.x, ks, model=a.model, criterion=a.criterion, heldout=a.heldout, seed=a.seed, loo=not a.no_loo,
        epochs=a.epochs, model_options=config.options,
    )  # fmt: skip
    print(_selection_table(config.family, sel, f"{config.family.name} on {a.data} (n={sel.n}, seed {a.seed})"))
    record = {"model": config.to_dict()["model"], "data": a.data, "seed": a.seed, "clusters": ks, **sel.to_dict()}
    if run_dir is not None:
        write_json(run_dir / "selection.json", record)
    if a.json:
        print(json.dumps(record))


def _selection_table(family: Family, sel: Any, title: str) -> str:
    """The selection as printed: one row per candidate, the choice of each criterion marked."""
    structure = family.structure if any(r.options for r in sel.rows) else None
    head = ["K", *([structure] if structure else []), "loglik", "bic", "icl", "heldout_ll", "elpd_loo", "seconds", ""]
    rows = [head]
    for r in sel.rows:
        marks = [c for c, (k, o) in sel.choices.items() if k == r.clusters and o == r.options]
        mark = ("<- " + ", ".join(marks)) if marks else ("failed: " + r.error if r.error else "")
        values = (r.loglik, r.bic, r.icl, r.heldout_loglik, r.elpd_loo, r.seconds)
        rows.append([str(r.clusters), *([str(r.options.get(structure))] if structure else []), *map(_fmt, values), mark])
    lines = [title, _table(rows)]
    chosen = ", ".join(f"{k}={v}" for k, v in sel.choice_options.items())
    lines.append(f"choice: K={sel.choice}{', ' + chosen if chosen else ''} (best {sel.criterion})")
    if sel.note:
        lines.append(f"note: {sel.note}")
    return "\n".join(lines)


_COMMANDS = {"fit": _cmd_fit, "select": _cmd_select, "evaluate": _cmd_evaluate, "predict": _cmd_predict}


def _top_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mixzoo", description="Deep mixture models for clustering, as Pyro model/guide pairs.",
        epilog="`mixzoo COMMAND --help` shows a command's options; `mixzoo` alone runs `mixzoo fit`.",
    )  # fmt: skip
    p.add_argument("--version", action="version", version=f"mixzoo {__version__}")
    p.add_argument(
        "command", nargs="?", choices=("models", *_COMMANDS), help="models, fit, select, evaluate or predict"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixzoo`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["fit"]  # `mixzoo` alone runs the default job
    try:
        if args[0] not in ("models", *_COMMANDS):
            _top_parser().parse_args(args[:1])  # --help, --version, or a clear error about the command
            return 2
        if args[0] == "models":
            m = _Parser(prog="mixzoo models", description="Families, guides and losses, and which train which.")
            m.add_argument("--json", action="store_true", help="print everything as one JSON object")
            _cmd_models(m.parse_args(args[1:]).json)
        else:
            _COMMANDS[args[0]](args[1:])
    except MixzooInputError as err:
        print(f"mixzoo: error: {err}", file=sys.stderr)
        return 2
    except TrainingDivergedError as err:
        print(f"mixzoo: {err}", file=sys.stderr)
        return 1
    except torch.linalg.LinAlgError as err:  # outside training: a start on data far from the floors it assumes
        print(f"mixzoo: error: a covariance matrix is not positive-definite ({str(err).splitlines()[0]}); some "
              "features may be constant or collinear, or their units far from those of the model's floors: keep the "
              "default --scale common, or try --scale features, fewer --clusters or --pca.", file=sys.stderr)  # fmt: skip
        return 1
    except KeyboardInterrupt as err:
        print("\n" + _interrupted_message(err), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
