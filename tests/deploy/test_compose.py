"""deploy/compose.yaml: PostgreSQL with pgvector, bot shards and writers sharing it, checked by reading it.

No test starts it: it needs the image built with podman and the pgvector image from a registry, which this
machine cannot reach. What it says is checked instead, and podman-compose (a test extra) reads and merges it.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_the_database_has_pgvector_a_volume_and_a_health_check():
    database = services()["postgres"]
    assert "pgvector" in database["image"] and database["healthcheck"]["test"][1] == "pg_isready"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in database["volumes"])


def test_the_shards_cover_every_shard_once_with_one_count():
    commands = [s["command"] for s in services().values() if s.get("command", [None])[0] == "discord"]
    specs = [c[c.index("--shard") + 1] for c in commands]
    counts = {int(spec.split("/")[1]) for spec in specs}
    assert len(counts) == 1 and sorted(int(spec.split("/")[0]) for spec in specs) == list(range(counts.pop()))
    writers = [s for s in services().values() if s.get("command") == ["run"]]
    assert len(writers) >= 2


def test_every_citebot_process_shares_the_database_and_waits_for_it():
    for name, service in services().items():
        if name == "postgres":
            continue
        url = service["environment"]["CITEBOT_INDEX__URL"]
        assert re.fullmatch(r"postgresql://citebot@postgres:5432/news", url)  # no password in the URL
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["env_file"] == "citebot.env"


def test_no_secret_is_written_in_the_file_and_the_env_file_is_never_committed():
    text = COMPOSE.read_text()
    assert not re.search(r"(PASSWORD|TOKEN)\s*[:=]\s*\S", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    assert "deploy/*.env" in (ROOT / ".gitignore").read_text().split()


def test_podman_compose_reads_it_as_written(tmp_path):
    """podman-compose (a test extra) merges the file as compose would run it: every citebot service gets the
    shared settings from the anchor."""
    program = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    if not Path(program).exists():
        pytest.skip("podman-compose is not installed (pip install -e '.[test]')")
    shutil.copy2(COMPOSE, tmp_path / "compose.yaml")
    (tmp_path / "citebot.env").write_text("")  # the secrets file the operator writes
    result = subprocess.run([program, "-f", str(tmp_path / "compose.yaml"), "config"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    assert set(merged) == {"postgres", "shard-0", "shard-1", "writer-a", "writer-b"}
    for name in ("shard-0", "shard-1", "writer-a", "writer-b"):
        assert merged[name]["environment"]["CITEBOT_INDEX__URL"].startswith("postgresql://citebot@postgres")
        assert merged[name]["image"] == "localhost/citebot:latest"
