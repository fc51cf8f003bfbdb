"""The manual holds together: every link in README.md and docs/ leads somewhere that exists (a file of the
checkout, a heading of a page), and the documentation site builds without a warning."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens, -1, -2 for
    repeats; headings inside code blocks are not headings."""
    found, seen, code = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            code = not code
        if code or not (m := re.match(r"#+ (.+)", line)):
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(page: Path) -> list[str]:
    text, code = [], False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            code = not code
        elif not code:
            text.append(re.sub(r"`[^`]*`", "", line))
    return LINK.findall("\n".join(text))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading_that_exist(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target) or target == "url":  # a web address, or the text's own example
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists() or ROOT.resolve() not in (where, *where.parents):
            broken.append(f"{target}: no such file in the checkout")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: {where.name} has no heading #{anchor}")
    assert not broken, broken


def test_the_readme_stays_a_front_door_and_every_page_is_on_the_site():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
    site = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*(\S+\.md)\s*$", site, re.M))
    assert listed == {p.name for p in PAGES if p.parent.name == "docs"}


def test_the_command_and_settings_references_are_what_the_code_says():
    checked = subprocess.run([sys.executable, "docs/reference.py", "--check"], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    cli = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    settings = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert "## `citebot migrate`" in cli and "--to TARGET" in cli and "## `citebot eval squad`" in cli
    assert "| `index.url` | (unset) |" in settings and "`index.factory`" in settings


def test_the_documentation_site_builds_without_a_warning(tmp_path):
    pytest.importorskip("mkdocs")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "site" / "postgresql" / "index.html").exists()
