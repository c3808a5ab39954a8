"""The docs cannot rot: every link of the README and docs/ resolves, and every code block
marked ``runnable`` (```python runnable or ```bash runnable) runs, in a fresh folder."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|bash) runnable\n(.*?)^```$", re.M | re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def runnable_blocks() -> list[tuple[str, str, str]]:
    return [(f"{page.name}:{i}", kind, code) for page in PAGES
            for i, (kind, code) in enumerate(BLOCK.findall(page.read_text()))]


def test_the_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path):
    for target in LINK.findall(page.read_text()):
        if "://" not in target and not target.startswith("mailto:"):
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_there_are_runnable_blocks():
    assert len(runnable_blocks()) >= 3


@pytest.mark.parametrize("name,kind,code", runnable_blocks(), ids=[b[0] for b in runnable_blocks()])
def test_runnable_block_runs(name: str, kind: str, code: str, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "REPO": str(ROOT),
           # the blocks' `python` is the interpreter running the tests, activated or not
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-c", code] if kind == "python" else ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
