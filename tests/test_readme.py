"""The README and the documentation pages run as written, and the README's figures are recorded ones.

For every page of ``PAGES`` (the README and the pages of docs/ with code a user copies):

- every ```python block runs alone in a fresh interpreter;
- every `mixzoo` command it shows, in its shell blocks and in its inline code, runs through
  ``mixzoo.app.cli.main`` in a cheap variant (``--epochs 1``, a subsample of a built-in data set, one epoch of a
  pretraining step), so a wrong flag, an unknown data set or a rejected combination fails here; a command a
  ```console block shows with a ``mixzoo: error: ...`` line after it must fail with exit code 2 and that message;
  a usage line with placeholders (``NAME``, ``DIR``, ``...``) has each of its flags checked against the command's
  ``--help``;
- its links into docs/benchmarks.md name existing sections, and every decimal figure of its prose is one of
  docs/benchmarks.md.

And for the README alone: every decimal figure of its prose and tables is one of the docs/benchmarks.md sections
that its part of the README (a ``##`` section) links to, and its results table is the headline section's.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [
    README,
    ROOT / "docs" / "getting-started.md",
    ROOT / "docs" / "concepts.md",
    ROOT / "docs" / "your-model.md",
    ROOT / "docs" / "families.md",
    ROOT / "docs" / "cli.md",
    ROOT / "docs" / "analysis.md",
    ROOT / "docs" / "reliability.md",
]
TEXTS = {page.relative_to(ROOT).as_posix(): page.read_text() for page in PAGES}
TEXT = TEXTS["README.md"]
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()
FENCED = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)  # info string's first word, body
SHELL = ("bash", "sh", "shell", "console", "")
BLOCKS = [(name, body) for name, text in TEXTS.items() for lang, body in FENCED.findall(text) if lang == "python"]


def _block(marker: str) -> str:
    """The first python block of the pages that holds ``marker``."""
    return next(body for _, body in BLOCKS if marker in body)


def _mnist_dir() -> str | None:
    """The MNIST idx directory named by $MIXZOO_DATA, or None (the MNIST commands are then skipped)."""
    path = os.environ.get("MIXZOO_DATA")
    return path if path and Path(path).is_dir() else None


# ---------------------------------------------------------------------------------------------- python blocks


def test_the_pages_have_python_blocks():
    assert len(BLOCKS) >= 8
    assert {name for name, _ in BLOCKS} >= {
        "README.md",
        "docs/getting-started.md",
        "docs/your-model.md",
        "docs/analysis.md",
    }


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{name}:{i}" for i, (name, _) in enumerate(BLOCKS)])
def test_python_block_runs_as_written(index, tmp_path):
    name, body = BLOCKS[index]
    script = tmp_path / f"block{index}.py"
    script.write_text(body)
    env = {**os.environ, "MIXZOO_TUTORIAL_CHEAP": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"a python block of {name} failed:\n{body}\n{done.stderr[-3000:]}"


def test_the_own_data_example_fits_and_predicts_as_the_page_says(tmp_path):
    """ "Your own data": its python block writes the tables, its two commands run on them."""
    subprocess.run([sys.executable, "-c", _block("shop.csv")], cwd=tmp_path, check=True, timeout=120)
    page = next(text for text in TEXTS.values() if "mixzoo fit --data shop.csv" in text)
    commands = re.search(r"```bash\n(mixzoo fit --data shop.csv.*?)```", page, re.S).group(1).strip().splitlines()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for line in commands:
            assert _main(line.split()[1:])[0] == 0, line
    finally:
        os.chdir(cwd)
    rows = (tmp_path / "new-clusters.csv").read_text().splitlines()
    assert rows[0] == "cluster,confidence,p_0,p_1" and len(rows) == 3
    assert rows[1].split(",")[0] != rows[2].split(",")[0]


def _class_code(source: str, name: str) -> str:
    tree = ast.parse(source)
    return ast.dump(next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name))


def test_the_benchmarks_copy_of_the_own_model_is_the_pages():
    """benchmarks/readme_model.py runs the class of "Writing a model" (docs/your-model.md) from a file: the same code."""
    copy = (ROOT / "benchmarks" / "readme_model.py").read_text()
    assert _class_code(copy, "MyMixture") == _class_code(_block("class MyMixture"), "MyMixture")


# ---------------------------------------------------------------------------------------------- mixzoo commands


def _shell_commands(block: str) -> list[tuple[str, str | None]]:
    """The `mixzoo ...` commands of a shell block: continued lines joined, comments dropped, one per `&&` part; each
    with the ``mixzoo: error: ...`` line shown after it, or None."""
    lines: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        # a usage line wrapped onto the next one
        if line[:1].isspace() and line.strip().startswith(("--", "[--")) and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    commands: list[tuple[str, str | None]] = []
    for line in lines:
        if line.startswith("mixzoo: error:") and commands:
            commands[-1] = (commands[-1][0], line.strip())
            continue
        for part in line.split(" #")[0].split("&&"):
            part = " ".join(part.split()).removeprefix("$ ")
            if part == "mixzoo" or part.startswith("mixzoo "):
                commands.append((part, None))
    return commands


def _block_commands() -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The `mixzoo` commands of each shell block of the pages that has some, in order, with the page's name."""
    found = [
        (name, _shell_commands(body))
        for name, text in TEXTS.items()
        for lang, body in FENCED.findall(text)
        if lang in SHELL
    ]
    return [(name, c) for name, c in found if c]


def _inline_commands() -> list[tuple[str, str]]:
    """Inline code outside the fenced blocks that is a `mixzoo` command with flags (or `mixzoo models`);
    a bare `mixzoo fit` or `mixzoo predict` names a command in prose."""
    found: list[tuple[str, str]] = []
    for name, text in TEXTS.items():
        for span in re.findall(r"`([^`]+)`", FENCED.sub("", text)):
            span = " ".join(span.split())
            if (
                span.startswith("mixzoo ")
                and ("--" in span or span == "mixzoo models")
                and span not in [c for _, c in found]
            ):
                found.append((name, span))
    return found


_SUBSTITUTE = {("--seed", "S"): "0", ("--consistency-lr", "F"): "0.001", ("--out", "DIR"): "out-dir"}
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|\||\.\.\.|^FILE|:CLASS$")


def _argv(command: str) -> tuple[list[str], bool]:
    """The command's arguments after `mixzoo`, optional `[...]` parts kept, the pages' simple placeholders filled
    (a seed, a learning rate, an output folder; ``DIR`` of ``--data-dir`` is the MNIST folder); and whether it still
    holds placeholders (a usage line, not a command to run)."""
    tokens = command.replace("[", " ").replace("]", " ").split()[1:]
    argv: list[str] = []
    for i, tok in enumerate(tokens):
        flag = tokens[i - 1] if i else ""
        if (flag, tok) in _SUBSTITUTE:
            tok = _SUBSTITUTE[flag, tok]
        elif (flag, tok) == ("--data-dir", "DIR"):
            tok = _mnist_dir() or "MISSING-MNIST-DIR"
        argv.append(tok)
    usage = any(_PLACEHOLDER.search(t) for t in argv if t != "MISSING-MNIST-DIR")
    return argv, usage


def _set(argv: list[str], flag: str, value: str) -> None:
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]


def _family_flags(model: str) -> set[str]:
    from mixzoo.models.family import MODELS

    family = MODELS.get(model)
    return {info.flag for info in family.options.infos()} if family else set()


def _cheap(argv: list[str]) -> list[str]:
    """The same command with one epoch of training and of each pretraining step, and 500 points of a built-in data set
    (the run directory's summary and plots, and MNIST's classifier, then take a second or two)."""
    from mixzoo.data import DATASETS

    argv = list(argv)
    if not argv or argv[0] not in ("fit", "select") or "--help" in argv:
        return argv
    _set(argv, "--epochs", "1")
    data = argv[argv.index("--data") + 1] if "--data" in argv else "digits"
    if data in DATASETS and "--subsample" not in argv:
        _set(argv, "--subsample", "500")
    if "--pretrain-classes" in argv:
        _set(argv, "--classifier-epochs", "1")
    model = argv[argv.index("--model") + 1] if "--model" in argv else "gmm"
    if "--pretrain" in _family_flags(model):
        _set(argv, "--pretrain", "1")
    return argv


def _main(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of `mixzoo ARGV` in this process, on one torch thread as the python blocks run
    (``--help`` and ``--version`` exit through SystemExit)."""
    from mixzoo.app.cli import main
    from mixzoo.training.threads import torch_threads

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), torch_threads(1):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code or 0
    return code, err.getvalue()


@functools.cache
def _known_flags(command: str) -> frozenset[str]:
    """Every flag the `--help` of `mixzoo COMMAND` lists; for fit and select, with every model family's, guide's and
    loss's options."""
    from mixzoo.models.family import MODELS

    if command in ("fit", "select"):
        helps = [[command, "--model", name, "--help"] for name in MODELS]
        if command == "fit":
            helps += [[command, "--model", name, "--guide", guide, "--loss", loss, "--help"]
                      for name, family in MODELS.items()
                      for guide, row in family.inference_table().items() for loss, why in row.items() if why is None]  # fmt: skip
    else:
        helps = [[command, "--help"] if command else ["--help"]]
    flags: set[str] = set()
    for argv in helps:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            from mixzoo.app.cli import main

            main(argv)
        flags |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", out.getvalue()))
    return frozenset(flags)


def _check_usage(argv: list[str], command: str) -> None:
    sub = argv[0] if argv and argv[0] in ("models", "fit", "select", "evaluate", "predict") else ""
    flags = [t.split("=")[0] for t in argv if t.startswith("--")]
    unknown = [f for f in flags if f not in _known_flags(sub)]
    assert not unknown, f"usage `{command}`: {unknown} not in `mixzoo {sub} --help`"


def _prepare() -> None:
    """The files the pages' commands read, in the working folder: the tables of "Your own data" and the file of the
    own model class (the class of "Writing a model")."""
    exec(_block("shop.csv"), {})
    Path("my_model.py").write_text(_block("class MyMixture").split("\n\nimport mixzoo")[0] + "\n")


def _run_commands(commands: list[tuple[str, str | None]], folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run each command cheaply in ``folder`` (or check its flags if it is a usage line); returns those that need an
    absent MNIST folder. A command shown with its error must exit 2 with that error."""
    monkeypatch.chdir(folder)
    _prepare()
    skipped = []
    for command, error in commands:
        argv, usage = _argv(command)
        if usage:
            _check_usage(argv, command)
            continue
        if "MISSING-MNIST-DIR" in argv:
            skipped.append(command)
            continue
        cheap = _cheap(argv)
        code, err = _main(cheap)
        ran = "mixzoo " + " ".join(cheap)
        if error is not None:
            assert (code, err.strip()) == (2, error), (
                f"`{command}` shows `{error}`; it printed `{err.strip()}` ({code})"
            )
        else:
            assert code == 0, f"command `{command}` (run as `{ran}`) exited {code}:\n{err[-3000:]}"
    return skipped


BLOCK_COMMANDS = _block_commands()
INLINE_COMMANDS = _inline_commands()


def test_the_commands_are_found():
    shown = [c for _, block in BLOCK_COMMANDS for c, _ in block] + [c for _, c in INLINE_COMMANDS]
    assert sum(not _argv(c)[1] for c in shown) >= 15 and sum(_argv(c)[1] for c in shown) >= 5
    assert any("--pretrain-classes" in c for _, block in BLOCK_COMMANDS for c, _ in block)  # a command continued by \
    assert any(error for _, block in BLOCK_COMMANDS for _, error in block)  # a refusal shown with its message
    assert {name for name, _ in BLOCK_COMMANDS} >= {
        "README.md",
        "docs/cli.md",
        "docs/your-model.md",
        "docs/families.md",
    }


@pytest.mark.parametrize(
    "commands", [c for _, c in BLOCK_COMMANDS], ids=[f"{n}:{c[0][0][:60]}" for n, c in BLOCK_COMMANDS]
)
def test_the_shell_block_commands_run(commands, tmp_path, monkeypatch):
    """The commands of one shell block run in order in one folder (a later one may read an earlier one's run)."""
    skipped = _run_commands(commands, tmp_path, monkeypatch)
    if skipped:
        pytest.skip(f"no MNIST folder (set MIXZOO_DATA): did not run {skipped}")


@pytest.mark.parametrize("command", [c for _, c in INLINE_COMMANDS], ids=[f"{n}:{c[:60]}" for n, c in INLINE_COMMANDS])
def test_the_inline_commands_run(command, tmp_path, monkeypatch):
    skipped = _run_commands([(command, None)], tmp_path, monkeypatch)
    if skipped:
        pytest.skip(f"no MNIST folder (set MIXZOO_DATA): did not run {skipped}")


def test_a_wrong_command_fails(tmp_path, monkeypatch):
    """The check itself: a command the CLI refuses fails, so does a usage line with an unknown flag, and so does a
    refusal shown with another message than the one printed."""
    with pytest.raises(AssertionError, match="exited 2"):
        _run_commands([("mixzoo fit --model gmm --data pinwheel --no-such-flag 3", None)], tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="exited 2"):
        _run_commands([("mixzoo fit --model gmm --data no-such-data", None)], tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="--no-such-flag"):
        _run_commands([("mixzoo fit --model NAME [--no-such-flag N]", None)], tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="shows"):
        _run_commands(
            [("mixzoo fit --model gmm --guide empty --loss vimco", "mixzoo: error: another message")],
            tmp_path,
            monkeypatch,
        )


# ---------------------------------------------------------------------------------------------- figures


def _slug(heading: str) -> str:
    """A heading's anchor, as GitHub and the documentation site write it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _sections() -> dict[str, str]:
    """Each heading's anchor in docs/benchmarks.md, with the text of its section: the ``<!-- name -->`` ...
    ``<!-- /name -->`` block that holds the heading, else up to the next heading of its level or above."""
    blocks = [(m.start(), m.end()) for m in re.finditer(r"<!-- ([\w.-]+) -->.*?<!-- /\1 -->", BENCHMARKS, re.S)]
    headings = list(re.finditer(r"^(#+) (.*)$", BENCHMARKS, re.M))
    out = {}
    for i, h in enumerate(headings):
        inside = [b for b in blocks if b[0] <= h.start() < b[1]]
        if inside:
            start, end = inside[0]
        else:
            later = [g.start() for g in headings[i + 1 :] if len(g.group(1)) <= len(h.group(1))]
            start, end = h.start(), later[0] if later else len(BENCHMARKS)
        out[_slug(h.group(2))] = BENCHMARKS[start:end]
    return out


SECTIONS = _sections()
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")

# Settings and versions the README states, not results: Python's versions.
SETTINGS = {"3.11", "3.12", "3.13"}


def _figures(text: str) -> set[str]:
    return set(FIGURE.findall(text))


def _readme_parts() -> list[tuple[str, str]]:
    """The README's ``##`` sections: (heading, text)."""
    parts = re.split(r"^(?=## )", TEXT, flags=re.M)
    return [(part.splitlines()[0], part) for part in parts]


WHOLE_SECONDS = re.compile(r"(?<![\w.])(\d+) ?s\b")
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w])")


def _unrecorded(part: str, sections: dict[str, str] = SECTIONS) -> list[str]:
    """The figures of a part of the README (outside its code blocks and link targets) that none of the
    docs/benchmarks.md sections it links to holds: decimals as written, whole seconds (``489 s``) as a number of the
    section that rounds to them."""
    prose = re.sub(r"\]\([^)]*\)", "]", FENCED.sub("", part))
    anchors = re.findall(r"docs/benchmarks\.md#([\w-]+)", part)
    linked = "\n".join(sections.get(a, "") for a in anchors)
    recorded = _figures(linked)
    recorded |= {r.rstrip("0") for r in recorded}
    rounded = {str(round(float(v))) for v in NUMBER.findall(linked)}
    seconds = {f"{v} s" for v in WHOLE_SECONDS.findall(prose) if v not in rounded}
    return sorted({f for f in _figures(prose) - SETTINGS if f not in recorded} | seconds)


def test_every_decimal_figure_of_the_readme_is_in_a_section_it_links_to():
    for heading, part in _readme_parts():
        assert not _unrecorded(part), (
            f"README `{heading}`: figures that no section it links to holds: {_unrecorded(part)}"
        )


def test_the_figure_check_looks_in_the_linked_section_only():
    sections = {"mnist": "| EM | 0.972 |", "headline": "| digits | 0.950 |"}
    assert _unrecorded("ACC 0.972 ([MNIST](docs/benchmarks.md#headline))", sections) == ["0.972"]
    assert (
        _unrecorded("ACC 0.972 ([MNIST](docs/benchmarks.md#mnist)), 0.95 ([x](docs/benchmarks.md#headline))", sections)
        == []
    )
    assert _unrecorded("ACC 0.972, no link", sections) == ["0.972"]
    assert _unrecorded("Python 3.11", sections) == []
    timed = {"t": "| fit | 489.2 s |"}
    assert _unrecorded("takes 489 s ([t](docs/benchmarks.md#t))", timed) == []
    assert _unrecorded("takes 370 s ([t](docs/benchmarks.md#t))", timed) == ["370 s"]


def test_a_benchmark_section_is_its_marked_block():
    headline = SECTIONS["headline-best-mixzoo-model-against-the-best-baseline-per-data-set"]
    assert headline.startswith("<!-- clustering-headline -->") and headline.rstrip().endswith(
        "<!-- /clustering-headline -->"
    )


# Settings the documentation pages state, not results: Python's and ArviZ's versions, the GMVAE paper's learning-rate
# decay.
PAGE_SETTINGS = SETTINGS | {"0.23", "0.99769"}


@pytest.mark.parametrize("name", [n for n in TEXTS if n != "README.md"])
def test_every_decimal_figure_of_a_page_is_recorded_in_the_benchmarks(name):
    """The pages quote figures beside their links; each one is somewhere in docs/benchmarks.md."""
    text = re.sub(r"<!-- defaults -->.*?<!-- /defaults -->", "", TEXTS[name], flags=re.S)  # written from it
    prose = re.sub(r"\]\([^)]*\)", "]", FENCED.sub("", text))
    recorded = _figures(BENCHMARKS)
    recorded |= {r.rstrip("0") for r in recorded}
    unrecorded = sorted(f for f in _figures(prose) - PAGE_SETTINGS if f not in recorded)
    assert not unrecorded, f"figures in {name} that no section of docs/benchmarks.md holds: {unrecorded}"


def _rows(table_text: str) -> list[list[str]]:
    lines = [ln.strip() for ln in table_text.splitlines() if ln.strip().startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln[1:-1])] for ln in lines[2:]]


def test_the_results_table_is_the_headline_section():
    after = TEXT.split("## Results", 1)[1]
    table = re.search(r"^\|.*?(?=^[^|])", after, re.M | re.S).group(0)
    readme = _rows(table)
    start, end = BENCHMARKS.index("<!-- clustering-headline -->"), BENCHMARKS.index("<!-- /clustering-headline -->")
    section = [[r[0], r[1], r[2], r[4], r[5]] for r in _rows(BENCHMARKS[start:end])]
    assert readme and readme == section


@pytest.mark.parametrize("name", list(TEXTS))
def test_the_links_into_the_benchmarks_name_sections(name):
    links = re.findall(r"benchmarks\.md#([\w-]+)", TEXTS[name])
    assert not [a for a in links if a not in SECTIONS], f"{name} links to sections docs/benchmarks.md does not have"


def test_the_readme_links_into_the_docs_name_pages():
    pages = re.findall(r"\]\((docs/[^)#]+)", TEXT)
    assert pages and not [p for p in pages if not (ROOT / p).is_file()]
    assert len(TEXT.splitlines()) <= 250
