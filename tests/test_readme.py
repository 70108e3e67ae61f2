"""The README's code runs as written: every ```python block, alone, in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


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
    commands = re.search(r"```bash\n(mixzoo fit --data shop.csv.*?)```", README.read_text(), re.S).group(1).strip().splitlines()
    from mixzoo.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for line in commands:
            assert main(line.split()[1:]) == 0, line
    finally:
        os.chdir(cwd)
    rows = (tmp_path / "new-clusters.csv").read_text().splitlines()
    assert rows[0] == "cluster,confidence,p_0,p_1" and len(rows) == 3
    assert rows[1].split(",")[0] != rows[2].split(",")[0]
