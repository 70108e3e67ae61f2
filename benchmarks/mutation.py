"""Mutation testing of the modules whose mistakes nothing else would catch: how many deliberate small breakages of
each module its own tests detect.

    python benchmarks/mutation.py [--groups scoring,em-nce,resume,user-model,data] [--max-children 2] [--out FILE]
                                  [--keep DIR [--from-kept]]

For each group, mutmut (``pip install -e ".[dev]"``) mutates the group's modules (an operator, a constant, a
comparison, a keyword argument, a return value: one change per mutant) and runs the group's own unit-level tests
against each mutant, only those that reach the mutated function. A mutant is *killed* when a test fails (or times
out), and *survives* when every test passes; *no tests* are mutants in code the group's tests never reach. The score
is mutmut's: killed and timed out over all mutants. Each group runs in a fresh temporary copy of ``mixzoo/``,
``tests/`` and ``pyproject.toml`` whose ``[tool.mutmut]`` table names the group's modules and tests (so the tree
itself carries no mutants folder). ``--keep DIR`` keeps the copies (``DIR/GROUP``: ``mutmut results``, ``mutmut
show NAME`` there list and show the survivors; ``--from-kept`` writes the section from them again without running).
Writes the section ``mutation`` of docs/benchmarks.md (or of
``--out``), with the surviving mutants' names.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import command, machine, table, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # group: (modules mutated, tests run against them)
    "scoring": (
        ("mixzoo/analysis/posterior.py", "mixzoo/inference/enumeration.py"),
        ("tests/test_scoring.py", "tests/test_posterior_inputs.py", "tests/test_stated_table.py",
         "tests/test_component_table.py", "tests/test_inference_exact.py", "tests/test_gmm.py"),
    ),
    "em-nce": (
        ("mixzoo/inference/em.py", "mixzoo/inference/nce.py"),
        ("tests/test_em_nce_parts.py", "tests/test_em.py", "tests/test_gmm_em.py", "tests/test_nce.py",
         "tests/test_inference_exact.py"),
    ),
    "resume": (
        ("mixzoo/training/persistence.py", "mixzoo/training/resumable.py"),
        ("tests/test_persistence.py", "tests/test_resume.py"),
    ),
    "user-model": (("mixzoo/app/user_model.py",), ("tests/test_user_model_parts.py",)),
    "data": (
        ("mixzoo/data/files.py", "mixzoo/data/validation.py"),
        ("tests/test_data_parts.py", "tests/test_data_files.py", "tests/test_validation.py"),
    ),
}

SLOW = ("test_two_component_error_falls_with_n", "test_componentwise_nce_start_recovers_the_deep_feature_mixture")
"""Tests left out of every group (a minute each, a study of the estimator rather than a check of the code: each mutant
they reach would cost them again)."""

KILLED = {1, 3, 36, 24, -24, 152, 255}  # a failing test, an internal pytest error, a timeout (mutmut's own codes)
NO_TESTS = {5, 33}


def _toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def prepare(group: str, where: Path) -> Path:
    """A copy of the tree for ``group`` whose pyproject names its modules and tests."""
    modules, tests = GROUPS[group]
    folder = where / group
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    shutil.copytree(ROOT / "mixzoo", folder / "mixzoo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text()
    text += (
        "\n[tool.mutmut]\n"
        'source_paths = ["mixzoo"]\n'
        f"only_mutate = {_toml_list(modules)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list([*tests, '-k', ' and '.join(f'not {t}' for t in SLOW)])}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-x"]\n'
        "use_git_change_detection = false\n"
    )
    (folder / "pyproject.toml").write_text(text)
    return folder


def results(folder: Path, modules: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """Per module: killed, survived, no tests, total, score and the survivors' names, from mutmut's meta files."""
    out: dict[str, dict[str, object]] = {}
    for module in modules:
        meta = folder / "mutants" / (module + ".meta")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
        killed = [k for k, v in codes.items() if v in KILLED]
        survived = sorted(k for k, v in codes.items() if v == 0)
        untested = sorted(k for k, v in codes.items() if v in NO_TESTS)
        skipped = [k for k, v in codes.items() if v == 34]
        tested = len(codes) - len(skipped)
        out[module] = {
            "total": len(codes),
            "killed": len(killed),
            "survived": survived,
            "no_tests": untested,
            "other": len(codes) - len(killed) - len(survived) - len(untested) - len(skipped),
            "score": len(killed) / tested if tested else float("nan"),
        }
    return out


def survivors_by_function(names: list[str]) -> str:
    """``function count, ...`` of mutant names such as ``mixzoo.data.files.x__features__mutmut_12``."""
    counts: dict[str, int] = {}
    for name in names:
        function = re.sub(r"__mutmut_\d+$", "", name.rsplit(".", 1)[-1])  # x_NAME, or x\u01c1CLASS\u01c1METHOD
        function = function.removeprefix("x\u01c1").removeprefix("x_").replace("\u01c1", ".")
        counts[function] = counts.get(function, 0) + 1
    return ", ".join(f"`{f}` {n}" for f, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def run_group(group: str, where: Path, max_children: int) -> tuple[dict[str, dict[str, object]], float]:
    folder = prepare(group, where)
    start = time.perf_counter()
    # one torch thread: mutmut forks each mutant's test process from a warmed one, and a forked OpenMP pool spins
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
        cwd=folder, capture_output=True, text=True, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed on {group} ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return results(folder, GROUPS[group][0]), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"of {', '.join(GROUPS)}")
    ap.add_argument("--max-children", type=int, default=2, help="mutants tested at once")
    ap.add_argument("--keep", default=None, help="keep each group's copy in DIR/GROUP")
    ap.add_argument("--out", default=None)
    ap.add_argument("--from-kept", action="store_true", help="write the section from the copies --keep kept, not run")
    a = ap.parse_args()
    if a.from_kept and not a.keep:
        ap.error("--from-kept reads the copies of --keep DIR")
    groups = [g.strip() for g in a.groups.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        ap.error(f"--groups: unknown {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    where = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="mixzoo-mutation-"))
    rows, survivors = [], []
    try:
        for group in groups:
            if a.from_kept:
                found, seconds = results(where / group, GROUPS[group][0]), float("nan")
            else:
                found, seconds = run_group(group, where, a.max_children)
            tests = ", ".join(f"`{Path(t).name}`" for t in GROUPS[group][1])
            for module, r in found.items():
                rows.append([group, f"`{module}`", tests, r["total"], r["killed"], len(r["survived"]),
                             len(r["no_tests"]), r["other"], f"{100 * r['score']:.0f} %",
                             "-" if seconds != seconds else f"{seconds:.0f}"])  # fmt: skip
                alive = r["survived"] + r["no_tests"]
                if alive:
                    survivors.append(f"- `{module}`: {survivors_by_function(alive)}")
                print(rows[-1], flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(where, ignore_errors=True)
    body = [
        "## Mutation testing: the modules nothing else would catch",
        "",
        f"Command: `{command()}`  ",
        f"Machine: {machine()}  ",
        "mutmut's mutants of each module, tested by the group's own unit-level tests (those that reach the mutated "
        "function); *killed* counts failing and timed-out tests, *no tests* mutants no selected test reaches, "
        "*other* mutants mutmut could not judge (suspicious, skipped). Score: killed over all mutants. Seconds are "
        "the group's, both modules together. Left out of every group: "
        + ", ".join(f"`{t}`" for t in SLOW) + " (a minute each).",
        "",
        table(["group", "module", "tests", "mutants", "killed", "survived", "no tests", "other", "score", "s"], rows),
        "",
        "Surviving and unreached mutants by function (`mutmut results` and `mutmut show NAME` in a `--keep` copy list "
        "and show them). Those read one by one were equivalent or out of the groups' reach: a default argument "
        "spelled another way (`dim=+1` for `-1` on 2-D tensors, a chunk size of 4097, `None` for `False`), an "
        "error message's case, an order of a copy's memory, `strict=` on zips of equal lengths, a branch that needs a "
        "process group (`world > 1`), a GPU or pyarrow, and messages of file errors that pandas reports first:",
        "",
        *(survivors or ["none"]),
    ]
    print(f"wrote {write_section('mutation', chr(10).join(body), a.out)}")


if __name__ == "__main__":
    main()
