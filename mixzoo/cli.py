"""Command-line interface: ``mixzoo models``, ``mixzoo fit``, ``mixzoo select``, ``mixzoo evaluate``.

With ``--json`` the last line of stdout is one JSON object (the contract in the
project's design notes). Bad input ends with one ``mixzoo: error: ...`` line on
stderr and exit code 2; a diverged training run exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data import DATASETS
from .errors import MixzooInputError, TrainingDivergedError
from .inference import LOSSES
from .models import MODELS

__all__ = ["main"]

_METRICS = ("acc", "nmi", "ari", "purity", "expected_misclassified", "misclassified", "seconds")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mixzoo", description="Deep mixture models for clustering, as Pyro model/guide pairs."
    )
    sub = p.add_subparsers(dest="command")
    sub.add_parser("models", help="list models, their guides and compatible losses")

    f = sub.add_parser("fit", help="fit a model to a data set and report clustering metrics")
    f.add_argument("--model", default="gmm", help=f"one of: {', '.join(MODELS)} (default gmm)")
    f.add_argument("--guide", default=None, help="guide name (default: the model's own)")
    f.add_argument("--loss", default=None, help=f"one of: {', '.join(LOSSES)} (default: the model's own)")
    f.add_argument("--data", default="digits", help=f"one of: {', '.join(DATASETS)} (default digits)")
    f.add_argument("--data-dir", default=None, help="directory of MNIST idx files (or set MIXZOO_DATA)")
    f.add_argument("--clusters", type=int, default=None, help="number of clusters K (default: the data's classes)")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--batch-size", type=int, default=None)
    f.add_argument("--lr", type=float, default=None)
    f.add_argument("--lr-decay", type=float, default=None, help="multiply the learning rate by this each epoch")
    f.add_argument("--pca", type=int, default=None, help="reduce the data to D principal components")
    f.add_argument("--scale", action="store_true", help="standardise each feature")
    f.add_argument(
        "--dequantize", action="store_true", help="images: (integer level + uniform noise) / levels, in [0, 1)"
    )
    f.add_argument("--subsample", type=int, default=None, help="use N randomly chosen points")
    f.add_argument("--n-init", type=int, default=None, help="restarts; the best final loss is kept")
    f.add_argument("--covariance", choices=("diag", "full"), default=None, help="gmm: covariance type")
    f.add_argument("--flow", choices=("nsf", "maf", "realnvp"), default=None, help="flow-mixture: flow family")
    f.add_argument("--transforms", type=int, default=None, help="flow-mixture: flow layers per component")
    f.add_argument("--hidden", default=None, help="flow-mixture: hidden sizes of each layer, e.g. 64,64")
    f.add_argument(
        "--base",
        choices=("kmeans", "clusters", "paper", "normal"),
        default=None,
        help="flow-mixture: base distributions",
    )
    f.add_argument("--temperature", type=float, default=None, help="encoder guide: initial softmax temperature")
    f.add_argument("--labels", type=int, default=None, help="semi-supervised: reveal N labels (balanced, seeded)")
    f.add_argument("--arch", choices=("mlp", "cnn"), default=None, help="neural-mixture: network for the scores")
    f.add_argument("--channels", default=None, help="neural-mixture: CNN channels per block, e.g. 64,128,256")
    f.add_argument("--gamma", type=float, default=None, help="neural-mixture: divisor of a* in the sigmoid (5)")
    f.add_argument(
        "--no-normalize",
        dest="normalize",
        action="store_false",
        default=None,
        help="neural-mixture: do not batch-normalize the scores (shows the collapse)",
    )
    f.add_argument("--sobel", action="store_true", default=None, help="neural-mixture: Sobel edges as CNN input")
    f.add_argument("--augment", action="store_true", default=None, help="neural-mixture: eq. (7) with augmented images")
    f.add_argument(
        "--two-fold",
        action="store_true",
        default=None,
        help="neural-mixture: Algorithm 1 (EM step, then consistency step)",
    )
    f.add_argument(
        "--consistency-lr", type=float, default=None, help="neural-mixture: learning rate of the consistency step"
    )
    f.add_argument("--latent", type=int, default=None, help="gmvae: dimension of z")
    f.add_argument("--likelihood", choices=("gaussian", "bernoulli"), default=None, help="gmvae: p(x|z)")
    f.add_argument("--anneal-every", type=int, default=None, help="gmvae: halve the std floors every N epochs (0: off)")
    f.add_argument(
        "--anneal-start", type=float, default=None, help="gmvae: the std floors' first value (the paper's 1; halved from there)"
    )
    f.add_argument("--pretrain", type=int, default=None, help="gmvae: autoencoder pretraining epochs (0: off)")
    f.add_argument(
        "--features", choices=("linear", "quadratic"), default=None, help="energy-mixture: sufficient statistics"
    )
    f.add_argument(
        "--pretrain-classes",
        default=None,
        help="deep transfer: train a classifier on these classes (e.g. 0,1,2,3,4), cluster the others on its features",
    )
    f.add_argument("--classifier-epochs", type=int, default=5, help="deep transfer: classifier training epochs")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    f.add_argument("--out", default=None, help="run directory for checkpoint, config and metrics")
    f.add_argument(
        "--checkpoint-every", type=int, default=None, help="write a resumable training state into --out every N epochs"
    )
    f.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted run in DIR (its own config)")
    f.add_argument("--retries", type=int, default=0, help="retry a diverged epoch with half the learning rate N times")
    f.add_argument(
        "--particles", type=int, default=None, help="samples per step of vimco/trace-enum/trace-graph/trace (vimco: 5)"
    )
    f.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    f.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    f.add_argument("--json", action="store_true", help="print the result as one JSON object on the last line")

    s = sub.add_parser("select", help="choose the number of clusters by held-out log-likelihood and LOO")
    s.add_argument("--model", default="gmm", help=f"one of: {', '.join(MODELS)} (default gmm)")
    s.add_argument("--data", default="digits", help=f"one of: {', '.join(DATASETS)} (default digits)")
    s.add_argument("--data-dir", default=None, help="directory of MNIST idx files (or set MIXZOO_DATA)")
    s.add_argument("--clusters", default="2..12", help="candidate K: a range 2..12 or a list 2,4,8 (default 2..12)")
    s.add_argument("--heldout", type=float, default=0.2, help="fraction of points held out (default 0.2)")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--pca", type=int, default=None, help="reduce the data to D principal components")
    s.add_argument("--scale", action="store_true", help="standardise each feature")
    s.add_argument("--dequantize", action="store_true", help="images: (integer level + uniform noise) / levels")
    s.add_argument("--subsample", type=int, default=None, help="use N randomly chosen points")
    s.add_argument("--no-loo", action="store_true", help="skip the PSIS-LOO column")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="directory for selection.json")
    s.add_argument("--overwrite", action="store_true", help="replace an existing selection in --out")
    s.add_argument("--json", action="store_true", help="print the table and choice as one JSON object last")

    e = sub.add_parser("evaluate", help="cluster data with a saved run and report metrics")
    e.add_argument("--run", required=True, help="run directory written by `mixzoo fit --out`")
    e.add_argument("--data", default=None, help="data set name (default: the run's own)")
    e.add_argument("--data-dir", default=None)
    e.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    e.add_argument("--json", action="store_true")
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
    head = f"{record['model']} ({record['guide']}, {record['loss']}) on {record['data']}: n={record['n']} K={record['clusters']}"
    print(head)
    print(_table([list(_METRICS), [_fmt(record.get(k)) for k in _METRICS]]))
    if as_json:
        print(json.dumps(record))


def _cmd_models() -> None:
    rows = [["model", "guides", "losses", "description"]]
    for spec in MODELS.values():
        rows.append([spec.name, ",".join(spec.guides), ",".join(spec.losses), spec.description])
    print(_table(rows))


_RESUME_KEEPS = {"command", "resume", "json", "no_progress"}


def _cmd_fit(a: argparse.Namespace, defaults: argparse.Namespace) -> None:
    from .distributed import init_from_env, launched_by_torchrun
    from .runner import FitConfig, config_from_json, run_fit

    distributed = launched_by_torchrun()
    if distributed:
        init_from_env(a.device)
    main = not distributed or int(os.environ.get("RANK", "0")) == 0
    progress = not a.no_progress and sys.stderr.isatty() and main
    if a.resume is not None:
        changed = sorted(k for k, v in vars(a).items() if k not in _RESUME_KEEPS and v != getattr(defaults, k, v))
        if changed:
            raise MixzooInputError(
                f"--resume continues the run with its saved config; drop {', '.join('--' + k.replace('_', '-') for k in changed)}."
            )
        config_path = Path(a.resume) / "config.json"
        if not config_path.is_file():
            raise MixzooInputError(f"--resume {a.resume!r} is not a run directory with a config.json.")
        try:
            config = config_from_json(json.loads(config_path.read_text()), a.resume)
        except json.JSONDecodeError as err:
            raise MixzooInputError(f"{str(config_path)!r} is not valid JSON ({err}).") from None
        record = run_fit(config, out=a.resume, resume=True, progress=progress, distributed=distributed)
        if main:
            _print_record(record, a.json)
        return

    names = ("covariance", "flow", "transforms", "hidden", "base", "temperature", "features", "latent", "likelihood")
    names += ("anneal_every", "anneal_start", "pretrain")
    names += ("arch", "channels", "gamma", "normalize", "sobel", "augment", "two_fold", "consistency_lr")
    options = {n: getattr(a, n) for n in names if getattr(a, n) is not None}
    config = FitConfig(
        model=a.model,
        data=a.data,
        guide=a.guide,
        loss=a.loss,
        clusters=a.clusters,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        lr_decay=a.lr_decay,
        pca=a.pca,
        scale=a.scale,
        dequantize=a.dequantize,
        subsample=a.subsample,
        n_init=a.n_init,
        seed=a.seed,
        device=a.device,
        data_dir=a.data_dir,
        options=options,
        labels=a.labels,
        pretrain_classes=a.pretrain_classes,
        classifier_epochs=a.classifier_epochs,
        checkpoint_every=a.checkpoint_every,
        retries=a.retries,
        particles=a.particles,
    )
    record = run_fit(config, out=a.out, overwrite=a.overwrite, progress=progress, distributed=distributed)
    if main:
        _print_record(record, a.json)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from .runner import run_evaluate

    _print_record(run_evaluate(a.run, data=a.data, data_dir=a.data_dir, device=a.device), a.json)


def _cmd_select(a: argparse.Namespace) -> None:
    from .checkpoint import prepare_run_dir, write_json
    from .data import load_dataset
    from .selection import parse_clusters, select_clusters

    ks = parse_clusters(a.clusters)
    run_dir = prepare_run_dir(a.out, a.overwrite) if a.out else None
    d = load_dataset(
        a.data, data_dir=a.data_dir, scale=a.scale, pca=a.pca, subsample=a.subsample, seed=a.seed, dequantize=a.dequantize
    )
    sel = select_clusters(d.x, ks, model=a.model, heldout=a.heldout, seed=a.seed, loo=not a.no_loo, epochs=a.epochs)
    print(f"{a.model} on {a.data}: n_train={sel.n_train} n_heldout={sel.n_heldout} seed={a.seed}")
    rows = [["K", "train_ll", "heldout_ll", "elpd_loo", "p_loo", "bic", "seconds", ""]]
    for r in sel.rows:
        mark = ("<- choice" if r.clusters == sel.choice else "") + (" (loo)" if r.clusters == sel.choice_loo else "")
        rows.append(
            [_fmt(v) for v in (r.clusters, r.train_loglik, r.heldout_loglik, r.elpd_loo, r.p_loo, r.bic, r.seconds)]
            + [mark.strip()]
        )
    print(_table(rows))
    print(f"choice: K={sel.choice} (best held-out log-likelihood); LOO prefers K={sel.choice_loo}")
    record = {"model": a.model, "data": a.data, "seed": a.seed, "clusters": ks, **sel.to_dict()}
    if run_dir is not None:
        write_json(run_dir / "selection.json", record)
    if a.json:
        print(json.dumps(record))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mixzoo`` console script; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not args:
        args = ["fit"]  # `mixzoo` alone runs the default job
    a = parser.parse_args(args)
    try:
        if a.command == "models":
            _cmd_models()
        elif a.command == "fit":
            _cmd_fit(a, parser.parse_args(["fit"]))
        elif a.command == "select":
            _cmd_select(a)
        elif a.command == "evaluate":
            _cmd_evaluate(a)
        else:
            parser.print_help()
            return 2
    except MixzooInputError as err:
        print(f"mixzoo: error: {err}", file=sys.stderr)
        return 2
    except TrainingDivergedError as err:
        print(f"mixzoo: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
