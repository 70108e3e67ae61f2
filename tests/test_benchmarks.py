"""The benchmark scripts run end to end in their tiny mode and write well-formed sections elsewhere than docs/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> None:
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True, timeout=120)


def _section(text: str, key: str) -> str:
    start, end = text.index(f"<!-- {key} -->"), text.index(f"<!-- /{key} -->")
    return text[start:end]


def test_clustering_table_and_headline(tmp_path):
    doc = tmp_path / "bench.md"
    doc.write_text("# Benchmarks\n\n<!-- older -->\n## An older section\n<!-- /older -->\n")
    _run("benchmarks/clustering.py", "--data", "moons", "--tiny", "--out", str(doc))
    _run("benchmarks/headline.py", "--out", str(doc))  # reads the tables back: no torch, about a second
    text = doc.read_text()
    assert "## An older section" in text  # other sections stay
    section = _section(text, "clustering-moons")
    assert "## Clustering: moons" in section
    assert "Command: `python benchmarks/clustering.py --data moons --tiny --out " in section
    assert "Machine: " in section and "torch " in section and "device cpu" in section
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| method | library | inference |")
    body = lines[1:]
    assert any("| mixzoo |" in ln for ln in body) and any("| scikit-learn |" in ln for ln in body)
    assert all(" ± " in ln for ln in body)  # mean ± std of every row
    assert all("| 1/1 |" in ln for ln in body)  # every method trained: a failed one is a row of "0/1"
    headline = _section(text, "clustering-headline")
    assert "| moons (tiny mode) |" in headline
    assert not (ROOT / "docs" / "benchmarks.md").read_text().count("--tiny")  # docs/ untouched


def test_a_section_drawn_from_others_is_as_old_as_the_first_of_them_that_is_not_fresh(tmp_path):
    """The headline names the tables it quotes: freshness.py must call it stale as soon as any of them is, and
    fresh, though its own commit is older than theirs, while they all are and its own script has not changed."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from freshness import assess, sections, sources, writers

    def short(rev: str) -> str:
        return subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip

    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()[:7]  # fmt: skip
    if first == short("HEAD"):
        pytest.skip("a checkout without history")
    head = short("HEAD")

    def doc(moons: str, headline: str = head) -> dict[str, str]:
        return sections(
            f"<!-- clustering-pinwheel -->\nMachine: x; commit {head}  \n<!-- /clustering-pinwheel -->\n"
            f"<!-- clustering-moons -->\nMachine: x; commit {moons}  \n<!-- /clustering-moons -->\n"
            f"<!-- clustering-headline -->\nMachine: x; commit {headline}  \n"
            "From the sections `clustering-pinwheel`, `clustering-moons` (dated by them).  \n"
            "<!-- /clustering-headline -->\n"
        )

    scripts = writers()
    assert sources(doc(head)["clustering-headline"]) == ["clustering-pinwheel", "clustering-moons"]
    assert assess("clustering-headline", doc(head), scripts) == (head, "fresh")
    measured, state = assess("clustering-headline", doc(first), scripts)  # one table measured long ago
    assert measured == head and state.startswith("stale (")
    measured, state = assess("clustering-headline", doc(head, headline=first), scripts)  # headline.py changed since
    assert state.startswith("stale (")
    summary = sections("<!-- a -->\nMachine: x; commit " + head + "  \n<!-- /a -->\n"
                       "<!-- b -->\nFrom the section `a` (command: `x`; in short)\n<!-- /b -->\n")  # fmt: skip
    assert assess("b", summary, scripts) == (head, "fresh")  # no commit of its own: dated by its source


def test_a_pca_table_trains_every_method_on_the_reduced_features(tmp_path):
    """The PCA tables hand the mixzoo rows features that already went through mixzoo's PCA; the run's own plan
    must be able to preprocess them as it would a user's file of them."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import mnist_dir

    if (data_dir := mnist_dir()) is None:
        pytest.skip("no MNIST idx files: set $MIXZOO_DATA")
    doc = tmp_path / "bench.md"
    _run("benchmarks/clustering.py", "--data", "mnist5-pca50", "--tiny", "--data-dir", data_dir, "--out", str(doc))
    rows = [ln for ln in _section(doc.read_text(), "clustering-mnist5-pca50").splitlines() if ln.startswith("| `")]
    assert rows and all("| 1/1 |" in ln for ln in rows), rows


def test_freshness_lists_sections_older_than_the_code_they_measure(tmp_path):
    """A section records the commit it was measured at on its Machine line; one measured before later changes to
    mixzoo/ is stale, one at HEAD fresh, one without a commit unrecorded."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    first = subprocess.run(["git", "rev-list", "--max-parents=0", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=True)  # fmt: skip
    if first.stdout.strip().startswith(head.stdout.strip()):
        import pytest

        pytest.skip("a checkout without history: no commit older than HEAD to compare with")
    doc = tmp_path / "bench.md"
    doc.write_text(
        f"<!-- nuts -->\n## A\n\nMachine: cpu; 2026-12-07; commit {head.stdout.strip()}  \n<!-- /nuts -->\n"
        f"<!-- units -->\n## B\n\nMachine: cpu; 2026-12-01; commit {first.stdout.strip()[:7]}  \n<!-- /units -->\n"
        "<!-- calibration -->\n## C\n\nMachine: cpu; 2026-11-01  \n<!-- /calibration -->\n"
        "<!-- inference-matrix-summary -->\n## D\n\nFrom the section `units` (its figures, in short)\n"
        "<!-- /inference-matrix-summary -->\n"
        "<!-- defaults -->\n## E\n\nFrom the section `nuts`, in short\n<!-- /defaults -->\n"
        f"<!-- clustering-moons -->\n## F\n\nMachine: cpu; 2026-12-01; commit {first.stdout.strip()[:7]}  \n"
        "<!-- /clustering-moons -->\n"
        f"<!-- clustering-headline -->\n## G\n\nMachine: cpu; 2026-12-01; commit {first.stdout.strip()[:7]}  \n"
        "<!-- /clustering-headline -->\n"
        "<!-- gmvae-annealing-digits -->\n## H\n\nMachine: cpu; 2026-12-01  \n<!-- /gmvae-annealing-digits -->\n"
    )
    out = subprocess.run([sys.executable, "benchmarks/freshness.py", "--doc", str(doc)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()[2:]}
    assert "fresh" in rows["nuts"]  # at HEAD: nothing committed since
    assert "stale (" in rows["units"] and "units.py" in rows["units"]
    assert "unrecorded" in rows["calibration"]
    assert "stale (" in rows["inference-matrix-summary"]  # a summary is as old as the section it is drawn from
    assert "fresh" in rows["defaults"]
    assert "| clustering.py |" in rows["clustering-moons"]  # written by f"clustering-{name}"
    assert "| headline.py |" in rows["clustering-headline"]  # a whole key before a prefix
    assert "| gmvae_annealing.py |" in rows["gmvae-annealing-digits"]  # key = f"gmvae-annealing-{...}", not gmvae-
    stale_only = subprocess.run([sys.executable, "benchmarks/freshness.py", "--doc", str(doc), "--stale"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "| nuts |" not in stale_only and "| units |" in stale_only


def test_a_section_records_the_commit_it_was_measured_at():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from report import commit, machine

    if commit() == "unknown":
        pytest.skip("not a git checkout")
    assert machine().endswith(f"; commit {commit()}")
    assert machine(measured_at="755861a").endswith("; commit 755861a")


def test_mutation_groups_name_modules_and_tests_that_exist_and_scores_count_mutmut_codes(tmp_path):
    import json
    import tomllib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import mutation

    for modules, tests in mutation.GROUPS.values():
        assert all((ROOT / m).is_file() for m in modules + tests), (modules, tests)
    folder = mutation.prepare("user-model", tmp_path)
    config = tomllib.loads((folder / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert config["only_mutate"] == ["mixzoo/app/user_model.py"]
    assert config["pytest_add_cli_args_test_selection"][:2] == ["tests/test_user_model_parts.py", "-k"]
    assert (folder / "mixzoo" / "app" / "user_model.py").is_file() and (folder / "tests" / "conftest.py").is_file()
    meta = folder / "mutants" / "mixzoo" / "app" / "user_model.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"a": 1, "b": 0, "c": 36, "d": 33, "e": 34, "f": None, "g": 3}  # killed, survived, timeout, no tests, ...
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    r = mutation.results(folder, ("mixzoo/app/user_model.py",))["mixzoo/app/user_model.py"]
    assert r["total"] == 7 and r["killed"] == 3 and r["survived"] == ["b"] and r["no_tests"] == ["d"]
    assert r["other"] == 1 and r["score"] == pytest.approx(3 / 6)  # the skipped one is not counted


def test_the_suite_reports_a_table_whose_methods_failed_though_its_process_ended_well(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run import status

    doc = tmp_path / "bench.md"
    rows = "| method | seeds ok | ACC |\n|---|---|---|\n| `gmm` | 0/3 | - |\n| `flow` | 3/3 | 0.9 ± 0.0 |\n| k-means | 3/3 | 0.5 ± 0.0 |\n"
    doc.write_text(f"<!-- clustering-moons -->\n## Clustering: moons\n\n{rows}<!-- /clustering-moons -->\n")
    assert status("clustering-moons", 0, str(doc)) == "1 of 3 methods failed"
    assert status("clustering-moons", 2, str(doc)) == "exit 2"
    doc.write_text(doc.read_text().replace("0/3", "2/3"))  # a method that trained on some seeds has its row
    assert status("clustering-moons", 0, str(doc)) == "ok"
    assert status("step-speed-cpu", 0, str(doc)) == "ok"
