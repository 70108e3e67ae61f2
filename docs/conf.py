"""Sphinx configuration of mixzoo's documentation.

Build it with warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Three pages are written at build time from the code, so that they cannot drift from it: the table of which guide
trains which model under which loss (from the registries), the command-line reference (from the parsers' ``--help``),
and the tutorials, copied from ``tutorials/`` with the outputs they are stored with (they are not executed here).
"""

from __future__ import annotations

import functools
import importlib
import io
import json
import re
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GENERATED = HERE / "_generated"
sys.path.insert(0, str(ROOT))

import mixzoo  # noqa: E402

project = "mixzoo"
author = "the mixzoo developers"
copyright = "the mixzoo developers"  # noqa: A001
release = version = mixzoo.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "_generated", "**.ipynb_checkpoints"]  # _generated/ is included into pages
nb_execution_mode = "off"  # the tutorials are rendered from the outputs they are stored with
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}

nitpicky = True  # a cross-reference to a renamed or missing mixzoo object is an error
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(torch|pyro|np|numpy|nn|pd|pandas|sklearn|zuko|arviz|az|xarray|matplotlib|scipy|typing|collections)(\..*)?",
    ),
    (
        r"py:.*",
        r"(Tensor|Module|Parameter|Distribution|ELBO|Trace|Figure|Path|Callable|Iterator|Any|Sequence|Mapping)(\..*)?",
    ),
    (
        r"py:.*",
        r"(int|float|str|bool|dict|list|tuple|None|type|object|callable|Generator|TorchDistribution|PyroOptim)(\..*)?",
    ),
    (r"py:.*", r"(TraceEnum_ELBO|Trace_ELBO|TraceGraph_ELBO|SVI|Predictive|InferenceData|DataTree)"),
]
# Two docstrings name an object by a path it does not have; remove each entry once its docstring is fixed:
# mixzoo/data/datasets.py (load_dataset): is_data_path is mixzoo.data.datasets.is_data_path;
# mixzoo/models/gmvae.py (NVISAGuide): GMVAEGuide is mixzoo.models.gmvae.GMVAEGuide.
nitpick_ignore: list[tuple[str, str]] = []

html_theme = "furo"
html_title = f"mixzoo {release}"
html_static_path: list[str] = []


def _inference_tables() -> str:
    from mixzoo.inference import ALGORITHMS
    from mixzoo.models import MODELS

    losses = list(ALGORITHMS)
    out = [
        "<!-- written by docs/conf.py from the registries; do not edit -->",
        "",
        "| model | guide | " + " | ".join(f"`{loss}`" for loss in losses) + " |",
        "|---|---|" + "---|" * len(losses),
    ]
    for name, family in MODELS.items():
        for guide, row in family.inference_table().items():
            if all(why is not None for why in row.values()):
                continue
            marks = ["**default**" if (guide, loss) == (family.default_guide, family.default_loss) else "yes" if row[loss] is None else ""
                     for loss in losses]  # fmt: skip
            out.append(f"| `{name}` | `{guide}` | " + " | ".join(marks) + " |")
    out += ["", "Why the empty cells are empty, one reason per model and guide (the first loss that cannot serve):", ""]
    for name, family in MODELS.items():
        for guide, row in family.inference_table().items():
            reasons = sorted({why for why in row.values() if why is not None})
            if reasons and any(why is None for why in row.values()):
                out.append(f"- `{name}` with `{guide}`: " + "; ".join(reasons))
            elif reasons and guide in ("empty", "posterior", "encoder"):
                out.append(f"- `{name}` with `{guide}`: {reasons[0]}")
    return "\n".join(out) + "\n"


def _cli_reference() -> str:
    from mixzoo.app.cli import main

    def helped(argv: list[str]) -> str:
        out = io.StringIO()
        with redirect_stdout(out):
            try:
                main(argv)
            except SystemExit:
                pass
        return out.getvalue()

    sections = [
        ("mixzoo", ["--help"]),
        ("mixzoo models", ["models", "--help"]),
        ("mixzoo fit", ["fit", "--help"]),
        ("mixzoo select", ["select", "--help"]),
        ("mixzoo evaluate", ["evaluate", "--help"]),
        ("mixzoo predict", ["predict", "--help"]),
    ]
    out = ["<!-- written by docs/conf.py from the parsers; do not edit -->", ""]
    for title, argv in sections:
        out += [f"## `{title}`", "", "```text", helped(argv).rstrip(), "```", ""]
    from mixzoo.models import MODELS

    out += ["## The options of each model family", "",
            "`mixzoo fit --model NAME --help` lists the options of the family `NAME`, with their defaults:", ""]  # fmt: skip
    for name, family in MODELS.items():
        out += [f"### `{name}`", ""]
        infos = family.options.infos()
        if not infos:
            out += ["No options.", ""]
            continue
        out += ["| flag | default | what it sets |", "|---|---|---|"]
        for info in infos:
            default = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else info.default
            where = info.applies_to()
            out.append(f"| `{info.flag}` | `{default}` | {info.doc}{' (with ' + where + ')' if where else ''} |")
        out.append("")
    from mixzoo.guides import GUIDES
    from mixzoo.inference import ALGORITHMS

    out += ["## The options of each guide and loss", ""]
    for kind, registry in (("guide", GUIDES), ("loss", ALGORITHMS)):
        for entry in registry.values():
            infos = entry.options.infos()
            if not infos:
                continue
            out += [f"### {kind} `{entry.name}`", "", "| flag | default | what it sets |", "|---|---|---|"]
            for info in infos:
                default = ",".join(map(str, info.default)) if isinstance(info.default, tuple) else info.default
                out.append(f"| `{info.flag}` | `{default}` | {info.doc} |")
            out.append("")
    return "\n".join(out).replace("|", "|")


def _tutorials() -> None:
    target = HERE / "tutorials"
    for old in target.glob("*.ipynb"):
        old.unlink()
    for notebook in sorted((ROOT / "tutorials").glob("*.ipynb")):
        shutil.copy(notebook, target / notebook.name)
        json.loads((target / notebook.name).read_text())  # a broken notebook fails here, with its name


def _write_generated(app: object) -> None:
    GENERATED.mkdir(exist_ok=True)
    for name, text in (("inference_table.md", _inference_tables()), ("cli.md", _cli_reference())):
        path = GENERATED / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    _tutorials()


@functools.cache
def _imported(name: str) -> tuple[object, ...]:
    """The objects a dotted ``mixzoo...`` name can mean: the attribute (``mixzoo.inference.two_fold``, a function)
    and the module of that path where one exists."""
    parts = name.split(".")
    try:
        found = [importlib.import_module(parts[0])]
    except ImportError:
        return ()
    for i, part in enumerate(parts[1:], start=2):
        step = [getattr(obj, part) for obj in found if hasattr(obj, part)]
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            module = None
        found = [obj for obj in [*step, module] if obj is not None]
        found = [obj for j, obj in enumerate(found) if all(obj is not other for other in found[:j])]
        if not found:
            return ()
    return tuple(found)


def _documented_alias(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference to a mixzoo object by the path of the module that defines it (``mixzoo.training.loop.fit``)
    to the page that documents the same object under the name it is imported by (``mixzoo.fit``). Only a reference
    whose object is documented under another name resolves; a missing object stays an error."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    module, cls = node.get("py:module"), node.get("py:class")
    scopes = [f"{module}.{cls}" if module and cls else None, module]
    # a docstring's relative reference is relative to the module that defines it, whatever name it is documented by
    where = re.search(r"docstring of ([\w.]+)", node.source or "")
    if where:
        defined = where.group(1).split(".")
        scopes += [".".join(defined[:i]) for i in range(len(defined) - 1, 0, -1)]
    candidates = [target] + [f"{scope}.{target}" for scope in scopes if scope]
    domain = env.get_domain("py")
    documented = {name: entry for name, entry in domain.objects.items() if name.startswith("mixzoo")}
    for candidate in candidates:
        if not candidate.startswith("mixzoo."):
            continue
        if candidate in documented:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], candidate, node, contnode)
        parts = candidate.split(".")
        for split in range(len(parts), 1, -1):  # the longest prefix that names a documented object by another name
            prefix, rest = ".".join(parts[:split]), parts[split:]
            objects = [o for o in _imported(prefix) if not isinstance(o, (str, int, float, bool, type(None)))]
            for name in documented:
                if name != prefix and any(o is p for o in _imported(name) for p in objects):
                    alias = ".".join([name, *rest])
                    if alias in documented:
                        return domain.resolve_xref(
                            env, node["refdoc"], app.builder, node["reftype"], alias, node, contnode
                        )
    return None


def setup(app: Any) -> None:
    app.connect("builder-inited", _write_generated)
    app.connect("missing-reference", _documented_alias)
