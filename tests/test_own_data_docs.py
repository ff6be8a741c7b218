"""docs/own_data.md: every code block of each journey runs, in order, in an empty folder."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from obliviate import DataSplit

DOC = Path(__file__).resolve().parents[1] / "docs" / "own_data.md"
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def journeys() -> dict[str, list[tuple[str, str]]]:
    """Code blocks per ``##`` section of the page, in order."""
    found = {}
    for section in re.split(r"^## ", DOC.read_text(), flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        blocks = BLOCK.findall(body)
        if blocks:
            found[title.strip()] = blocks
    return found


JOURNEYS = journeys()
NEEDS_FROM_TORCH = pytest.mark.xfail(not hasattr(DataSplit, "from_torch"), reason="needs from_torch", strict=False)


def test_the_page_has_the_three_journeys():
    titles = " | ".join(JOURNEYS)
    for words in ("torch `Dataset`", "folder of images", "CSV with a key column"):
        assert words in titles


@pytest.mark.parametrize("title", [pytest.param(t, marks=NEEDS_FROM_TORCH) if "torch" in t else t for t in JOURNEYS])
def test_journey_runs(title, tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for language, code in JOURNEYS[title]:
        command = [sys.executable, "-c", code] if language == "python" else ["bash", "-euo", "pipefail", "-c", code]
        run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{language} block of {title!r} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
