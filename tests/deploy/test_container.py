"""deploy/Containerfile: build the image with podman and use citebot in it, without network.

Runs where podman works and a base image is at hand: CITEBOT_CONTAINER_BASE names one (any image
with python3.11), else python:3.11-slim-bookworm if podman has it or can pull it. Elsewhere each
test is skipped, saying why. The image is built as `make image` builds it, from a wheelhouse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

BASE = os.environ.get("CITEBOT_CONTAINER_BASE", "docker.io/library/python:3.11-slim-bookworm")
SEEDS = {"000_13573c5537cf727e.txt", "002_7474c7b7afbde563.txt"}


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    if podman("image", "exists", BASE, check=False).returncode != 0 and \
            podman("pull", "--quiet", BASE, check=False, timeout=120).returncode != 0:
        pytest.skip(f"no base image: {BASE} is not here and cannot be pulled; set CITEBOT_CONTAINER_BASE")
    work = tmp_path_factory.mktemp("image")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for folder in ("config", "seeds", "retrieval", "bot"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    context = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation", "--wheel-dir",
                    str(context / "wheelhouse"), f"torch=={version('torch')}", "pip", f"{source}[discord,postgres]"],
                   check=True, capture_output=True, timeout=900)
    tag = f"localhost/citebot-test:{os.getpid()}"
    podman("build", "--quiet", "--build-arg", f"BASE={BASE}", "-f", str(ROOT / "deploy" / "Containerfile"),
           "-t", tag, str(context), timeout=1800)
    volume = f"citebot-test-{os.getpid()}"
    try:
        yield tag, volume
    finally:
        podman("volume", "rm", "--force", volume, check=False)
        podman("rmi", "--force", tag, check=False)


def run(image, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    tag, volume = image
    return podman("run", "--rm", "--network", "none", "-v", f"{volume}:/data", tag, *args, check=False,
                  timeout=timeout)


def test_the_image_answers_from_its_seeds_offline(image):
    result = run(image, "ask", "where are the new battlegroups?", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["found"] and answer["answer"]["text"].startswith("Four new battle groups")
    assert {Path(s["path"]).name for p in answer["passages"] for s in p["sources"]} == SEEDS
    result = run(image, "sources", "--format", "tsv", timeout=120)  # the index stayed in the volume
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1 + len(SEEDS)


def test_the_image_runs_the_bot_and_wants_its_token(image):
    result = run(image, timeout=120)  # the default command is `citebot discord`
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "CITEBOT_DISCORD_TOKEN" in line


def test_the_image_carries_the_postgresql_engine_and_says_when_the_database_is_away(image):
    tag, volume = image
    result = podman("run", "--rm", "--network", "none", "-v", f"{volume}:/data", "-e",
                    "CITEBOT_INDEX__URL=postgresql://citebot:s3cret@127.0.0.1:9/news", tag, "sources", check=False,
                    timeout=300)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.splitlines()
    assert "cannot reach the database" in line and "s3cret" not in line
