"""The README runs as written and its figures are recorded ones.

- every ```python block runs alone in a fresh interpreter;
- every `mixzoo` command it shows, in its shell blocks and in its inline code, runs through
  ``mixzoo.app.cli.main`` in a cheap variant (``--epochs 1``, a subsample of MNIST, one epoch of a
  pretraining step), so a wrong flag, an unknown data set or a rejected combination fails here;
  a usage line with placeholders (``NAME``, ``DIR``, ``...``) has each of its flags checked against
  the command's ``--help``;
- every decimal figure of its prose and tables (outside the generated ``defaults`` block) is one of
  docs/benchmarks.md, its results table is the headline section's, and its links into
  docs/benchmarks.md name existing sections.
"""

from __future__ import annotations

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
TEXT = README.read_text()
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
FENCED = re.compile(r"```(\w*)\n(.*?)```", re.S)
SHELL = ("bash", "sh", "shell", "console", "")


def _mnist_dir() -> str | None:
    """The MNIST idx directory named by $MIXZOO_DATA, or None (the MNIST commands are then skipped)."""
    path = os.environ.get("MIXZOO_DATA")
    return path if path and Path(path).is_dir() else None


# ---------------------------------------------------------------------------------------------- python blocks


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs_as_written(index, tmp_path):
    script = tmp_path / f"block{index}.py"
    script.write_text(BLOCKS[index])
    env = {**os.environ, "MIXZOO_TUTORIAL_CHEAP": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block {index} failed:\n{BLOCKS[index]}\n{done.stderr[-3000:]}"


def test_the_own_data_example_fits_and_predicts_as_the_readme_says(tmp_path):
    """The "Your own data" section: its python block writes the tables, its two commands run on them."""
    block = next(b for b in BLOCKS if "shop.csv" in b)
    subprocess.run([sys.executable, "-c", block], cwd=tmp_path, check=True, timeout=120)
    commands = re.search(r"```bash\n(mixzoo fit --data shop.csv.*?)```", TEXT, re.S).group(1).strip().splitlines()
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


# ---------------------------------------------------------------------------------------------- mixzoo commands


def _shell_commands(block: str) -> list[str]:
    """The `mixzoo ...` commands of a shell block: continued lines joined, comments dropped, one per `&&` part."""
    lines: list[str] = []
    for line in block.replace("\\\n", " ").splitlines():
        # a usage line wrapped onto the next one
        if line[:1].isspace() and line.strip().startswith(("--", "[--")) and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    commands = []
    for line in lines:
        for part in line.split(" #")[0].split("&&"):
            part = " ".join(part.split()).removeprefix("$ ")
            if part == "mixzoo" or part.startswith("mixzoo "):
                commands.append(part)
    return commands


def _block_commands() -> list[list[str]]:
    """The `mixzoo` commands of each shell block of the README that has some, in order."""
    found = [_shell_commands(body) for lang, body in FENCED.findall(TEXT) if lang in SHELL]
    return [c for c in found if c]


def _inline_commands() -> list[str]:
    """Inline code outside the fenced blocks that is a `mixzoo` command with flags (or `mixzoo models`);
    a bare `mixzoo fit` or `mixzoo predict` names a command in prose."""
    prose = FENCED.sub("", TEXT)
    found = []
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith("mixzoo ") and ("--" in span or span == "mixzoo models") and span not in found:
            found.append(span)
    return found


_SUBSTITUTE = {("--seed", "S"): "0", ("--consistency-lr", "F"): "0.001", ("--out", "DIR"): "out-dir"}
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$|\||\.\.\.|^FILE|:CLASS$")


def _argv(command: str) -> tuple[list[str], bool]:
    """The command's arguments after `mixzoo`, optional `[...]` parts kept, the README's simple placeholders filled
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
    """Every flag the `--help` of `mixzoo COMMAND` lists; for fit and select, with every model family's options."""
    from mixzoo.models.family import MODELS

    if command in ("fit", "select"):
        helps = [[command, "--model", name, "--help"] for name in MODELS]
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
    assert not unknown, f"README usage `{command}`: {unknown} not in `mixzoo {sub} --help`"


def _prepare() -> None:
    """The files the README's commands read, in the working folder: its tables (the "Your own data" block) and the
    file of its own model class (the class of the "Writing your own model" block)."""
    exec(next(b for b in BLOCKS if "shop.csv" in b), {})
    own = next(b for b in BLOCKS if "class MyMixture" in b)
    Path("my_model.py").write_text(own.split("\n\nimport mixzoo")[0] + "\n")


def _run_commands(commands: list[str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run each command cheaply in ``folder`` (or check its flags if it is a usage line); returns those that need an
    absent MNIST folder."""
    monkeypatch.chdir(folder)
    _prepare()
    skipped = []
    for command in commands:
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
        assert code == 0, f"README command `{command}` (run as `{ran}`) exited {code}:\n{err[-3000:]}"
    return skipped


BLOCK_COMMANDS = _block_commands()
INLINE_COMMANDS = _inline_commands()


def test_the_readme_commands_are_found():
    runnable = [c for block in BLOCK_COMMANDS for c in block] + INLINE_COMMANDS
    assert sum(not _argv(c)[1] for c in runnable) >= 15 and sum(_argv(c)[1] for c in runnable) >= 5
    assert any("--pretrain-classes" in c for block in BLOCK_COMMANDS for c in block)  # a command continued by \


@pytest.mark.parametrize("commands", BLOCK_COMMANDS, ids=[block[0][:60] for block in BLOCK_COMMANDS])
def test_the_readme_shell_block_commands_run(commands, tmp_path, monkeypatch):
    """The commands of one shell block run in order in one folder (a later one may read an earlier one's run)."""
    skipped = _run_commands(commands, tmp_path, monkeypatch)
    if skipped:
        pytest.skip(f"no MNIST folder (set MIXZOO_DATA): did not run {skipped}")


@pytest.mark.parametrize("command", INLINE_COMMANDS, ids=[c[:60] for c in INLINE_COMMANDS])
def test_the_readme_inline_commands_run(command, tmp_path, monkeypatch):
    skipped = _run_commands([command], tmp_path, monkeypatch)
    if skipped:
        pytest.skip(f"no MNIST folder (set MIXZOO_DATA): did not run {skipped}")


def test_a_wrong_flag_in_a_readme_command_fails(tmp_path, monkeypatch):
    """The check itself: a command the CLI refuses fails, and so does a usage line with an unknown flag."""
    with pytest.raises(AssertionError, match="exited 2"):
        _run_commands(["mixzoo fit --model gmm --data pinwheel --no-such-flag 3"], tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="exited 2"):
        _run_commands(["mixzoo fit --model gmm --data no-such-data"], tmp_path, monkeypatch)
    with pytest.raises(AssertionError, match="--no-such-flag"):
        _run_commands(["mixzoo fit --model NAME [--no-such-flag N]"], tmp_path, monkeypatch)


# ---------------------------------------------------------------------------------------------- figures


def _prose() -> str:
    """The README without its fenced blocks, the generated defaults block and link targets."""
    text = re.sub(r"<!-- defaults -->.*?<!-- /defaults -->", "", TEXT, flags=re.S)
    return re.sub(r"\]\([^)]*\)", "]", FENCED.sub("", text))


# Settings and versions the README states, not results: the paper's learning-rate decay, a base variance, the
# encoder's temperature decay, a halving factor, Python's and ArviZ's versions.
SETTINGS = {"0.99769", "0.1", "0.98", "0.5", "3.11", "3.12", "3.13", "0.23"}


def test_every_decimal_figure_of_the_readme_is_recorded_in_the_benchmarks():
    recorded = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", BENCHMARKS))
    recorded |= {r.rstrip("0") for r in recorded}
    figures = set(re.findall(r"(?<![\w.])\d+\.\d+(?![\w.])", _prose()))
    unrecorded = sorted(f for f in figures - SETTINGS if f not in recorded)
    assert not unrecorded, f"figures in README.md that no section of docs/benchmarks.md holds: {unrecorded}"


def _rows(table_text: str) -> list[list[str]]:
    lines = [ln.strip() for ln in table_text.splitlines() if ln.strip().startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln[1:-1])] for ln in lines[2:]]


def test_the_results_table_is_the_headline_section():
    readme = _rows(TEXT.split("## Results", 1)[1].split("### ", 1)[0])
    start, end = BENCHMARKS.index("<!-- clustering-headline -->"), BENCHMARKS.index("<!-- /clustering-headline -->")
    section = [[r[0], r[1], r[2], r[4], r[5]] for r in _rows(BENCHMARKS[start:end])]
    assert readme == section


def _slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_readme_links_name_sections_of_the_benchmarks():
    anchors = {_slug(h) for h in re.findall(r"^#+ (.*)$", BENCHMARKS, re.M)}
    links = re.findall(r"docs/benchmarks\.md#([\w-]+)", TEXT)
    assert links and not [a for a in links if a not in anchors]
