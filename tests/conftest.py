from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    """Settings with the index in a temporary folder; keyword sections override the defaults."""
    for name in list(__import__("os").environ):
        if name.startswith("CITEBOT_"):
            monkeypatch.delenv(name)

    def make(**sections):
        sections["index"] = {"dir": str(tmp_path / "index"), **sections.get("index", {})}
        return load_settings(**sections)

    return make


@pytest.fixture
def web():
    """A real HTTP server on 127.0.0.1 (tests/retrieval/webserver.py); each test sets its routes."""
    from tests.retrieval.webserver import WebServer

    with WebServer() as server:
        yield server
