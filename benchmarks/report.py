"""Write one benchmark's section into docs/benchmarks.md (or another file), replacing its previous version."""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
DOC_ENV = "MIXZOO_BENCHMARKS_DOC"
"""Environment variable naming another file to write the sections into (set by ``benchmarks/run.py --out``)."""
HEADER = (
    "# Benchmarks\n\nEach section is written by the script named in it; rerun the command to refresh it. Sections record the "
    "commit\nthey were measured at; `python benchmarks/freshness.py --stale` lists those older than the code they measure.\n"
)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any = None) -> str:
    """``cpu``, or ``cuda (<GPU name>)`` for a CUDA device."""
    import torch

    dev = torch.device(device or "cpu")
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


def commit() -> str:
    """The short hash of the checked-out commit, with ``+`` where ``mixzoo/`` or ``benchmarks/`` has changes not yet
    committed (the figures then come from code no commit holds); ``unknown`` outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mixzoo", "benchmarks"], cwd=ROOT,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def machine(device: Any = None, *, measured_at: str | None = None) -> str:
    """A one-line description of the machine, library versions, the device the numbers come from, the date, and the
    commit of the code measured (``measured_at``, else the checked-out one: :func:`commit`), which
    ``benchmarks/freshness.py`` compares with the code's later changes."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    threads = torch.get_num_threads()
    text = (
        f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPU cores, {threads} torch thread{'s' * (threads != 1)}, "
        f"{gpu}; Python {platform.python_version()}, torch {torch.__version__}"
    )
    if device is not None:
        text += f"; device {device_name(device)}"
    return f"{text}; {datetime.date.today().isoformat()}; commit {measured_at or commit()}"


def command() -> str:
    """The command line that started this process, with the script's path relative to the repository."""
    argv = list(sys.argv)
    script = Path(argv[0]).resolve()
    try:
        argv[0] = str(script.relative_to(ROOT))
    except ValueError:
        pass
    return shlex.join(["python", *argv])


def doc_path(doc: str | Path | None = None) -> Path:
    """The file the sections go to: ``doc``, else ``$MIXZOO_BENCHMARKS_DOC``, else docs/benchmarks.md."""
    if doc is not None:
        return Path(doc)
    env = os.environ.get(DOC_ENV)
    return Path(env) if env else DOC


def mnist_dir(arg: str | None = None) -> str | None:
    """The MNIST idx directory: ``arg``, else ``$MIXZOO_DATA``, else ../shared/data/mnist beside the repository;
    ``None`` when none of them exists."""
    for candidate in (arg, os.environ.get("MIXZOO_DATA"), str(ROOT.parent / "shared" / "data" / "mnist")):
        if candidate and Path(candidate).is_dir():
            return candidate
    return None


def write_section(key: str, body: str, doc: str | Path | None = None) -> Path:
    """Insert or replace the section delimited by ``<!-- key -->`` markers; returns the file written."""
    path = doc_path(doc)
    text = path.read_text() if path.exists() else HEADER
    start, end = f"<!-- {key} -->", f"<!-- /{key} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read_section(key: str, doc: str | Path | None = None) -> str | None:
    """The body of the section ``key``, or ``None`` when the file or the section does not exist."""
    path = doc_path(doc)
    if not path.exists():
        return None
    m = re.search(re.escape(f"<!-- {key} -->") + "\n(.*?)\n" + re.escape(f"<!-- /{key} -->"), path.read_text(), re.S)
    return m.group(1) if m else None


def table(header: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; floats with 3 decimals."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def parse_table(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in ``text`` as dicts keyed by the header."""
    def cells(line: str) -> list[str]:  # split on the pipes that are not escaped as \|
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]

    lines = [ln.strip() for ln in text.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = cells(line)
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(dict(zip(header, cells(row), strict=False)))
            return rows
    return []
