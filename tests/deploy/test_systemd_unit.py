"""deploy/citebot-discord.service: what the unit says, checked by reading it, and by systemd's own parser.

Neither check starts the service: no systemd runs as PID 1 here. `systemd-analyze verify` parses
the unit as systemd would (every key, every value) but needs ExecStart's program to exist, so it
verifies a copy whose ExecStart names a stub script; everything else is the shipped file.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNIT = ROOT / "deploy" / "citebot-discord.service"
SHARD = ROOT / "deploy" / "citebot-discord@.service"  # one instance per shard
WRITER = ROOT / "deploy" / "citebot-run@.service"  # one instance per writer


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) pairs in order; a key may repeat, as Environment= does."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(section, key):
    return [v for k, v in section if k == key]


def test_the_unit_runs_the_bot_with_the_token_from_a_file_outside_the_repo():
    unit = read_unit(UNIT.read_text())
    service = unit["Service"]
    (command,) = values(service, "ExecStart")
    program, *args = command.split()
    assert Path(program).is_absolute() and Path(program).name == "citebot" and args == ["discord"]
    (token_file,) = values(service, "EnvironmentFile")
    assert Path(token_file).is_absolute() and not token_file.startswith("-")  # required: no file, no start
    assert not Path(token_file).is_relative_to(ROOT) and not (ROOT / Path(token_file).name).exists()
    assert "CITEBOT_DISCORD_TOKEN" not in "".join(values(service, "Environment"))


def test_the_index_lives_in_the_state_directory():
    service = read_unit(UNIT.read_text())["Service"]
    (state,) = values(service, "StateDirectory")
    assert f"CITEBOT_HOME=%S/{state}" in values(service, "Environment")
    (cache,) = values(service, "CacheDirectory")
    assert "XDG_CACHE_HOME=%C" in values(service, "Environment") and cache == "citebot"


def test_it_restarts_on_failure_but_not_on_a_setting_to_fix():
    service = read_unit(UNIT.read_text())["Service"]
    assert values(service, "Restart") == ["on-failure"]
    assert "2" in values(service, "RestartPreventExitStatus")[0].split()
    assert values(service, "KillSignal") == ["SIGTERM"]
    assert values(read_unit(UNIT.read_text())["Install"], "WantedBy") == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit, name", [(UNIT, UNIT.name), (SHARD, "citebot-discord@0.service"),
                                        (WRITER, "citebot-run@a.service")],
                         ids=["service", "shard-template", "writer-template"])  # a template is verified through an instance
def test_systemd_accepts_every_line(tmp_path, unit, name):
    stub = tmp_path / "citebot"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    text = unit.read_text()
    program = values(read_unit(text)["Service"], "ExecStart")[0].split()[0]
    copy = tmp_path / name
    copy.write_text(text.replace(f"ExecStart={program}", f"ExecStart={stub}"))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    # verify exits 0 for unknown keys and bad values too: it only warns, on stderr.
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_the_shard_template_runs_shard_i_of_n_with_its_secrets_in_a_file():
    service = read_unit(SHARD.read_text())["Service"]
    (command,) = values(service, "ExecStart")
    assert command.split()[1:] == ["discord", "--shard", "%i/${CITEBOT_SHARDS}"]
    assert values(service, "EnvironmentFile") == ["/etc/citebot/discord.env"]  # token, database, shard count
    assert not any("CITEBOT_DISCORD_TOKEN" in v or "INDEX__URL" in v for v in values(service, "Environment"))
    assert "2" in values(service, "RestartPreventExitStatus")[0].split()  # e.g. --shard without index.url


def test_the_writer_template_runs_a_writer_with_its_own_state_and_the_database_in_a_file():
    service = read_unit(WRITER.read_text())["Service"]
    (command,) = values(service, "ExecStart")
    assert command.split()[1:] == ["run"]
    assert values(service, "EnvironmentFile") == ["/etc/citebot/writer.env"]
    assert not any("INDEX__URL" in v or "PASSWORD" in v for v in values(service, "Environment"))
    (state,) = values(service, "StateDirectory")
    assert "%i" in state and f"CITEBOT_HOME=%S/{state}" in values(service, "Environment")  # writers share no folder
