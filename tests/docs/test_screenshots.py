"""The README's picture of an answer is what citebot prints today (docs/screenshots.py --check: the real model,
the seeds, the real renderer)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_the_readmes_terminal_picture_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "screenshots.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    svg = (ROOT / "docs" / "img" / "answer-terminal.svg").read_text(encoding="utf-8")
    assert "Hungary,&#160;Slovakia" in svg or "Hungary, Slovakia" in svg
    assert "…/seeds" in svg and str(ROOT) not in svg  # no checkout's path in the picture
