"""citebot built as a wheel and installed into a fresh environment outside the checkout, run as a user runs it.

The fresh environment gets the wheel alone (`pip --python … install --no-deps`); its dependencies
come from this environment's site-packages through a .pth line added after the install, so no
download is needed. Every command runs from an empty folder with no PYTHONPATH, so nothing can
import the checkout's modules by accident (test_the_installed_copy_imports_itself checks that).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

QUESTION = "where are the new battlegroups?"
SOURCE_FILES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
SOURCE_FOLDERS = ("config", "seeds", "retrieval", "bot")
DISCORD_EXTRA_LINE = "citebot: `citebot discord` needs discord.py, which is not installed: pip install 'citebot[discord]'"

# Makes `import discord` fail as it does where discord.py is not installed.
NO_DISCORD = textwrap.dedent("""\
    import sys

    class NoDiscord:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "discord" or name.startswith("discord."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoDiscord)
""")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    work: Path

    @property
    def citebot(self) -> str:
        return str(self.venv / "bin" / "citebot")

    @property
    def package_data(self) -> Path:
        site = subprocess.run([str(self.venv / "bin" / "python"), "-c", "import sysconfig; "
                               "print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True)
        return Path(site.stdout.strip()) / "retrieval" / "_data"

    def run(self, *args, cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
        cwd.mkdir(parents=True, exist_ok=True)
        return subprocess.run([self.citebot, *args], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would point Python or citebot at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CITEBOT_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "XDG_DATA_HOME")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("installed")
    # Built from a copy of the sources: setuptools' build/ folder in the checkout would keep stale modules.
    source = work / "source"
    source.mkdir()
    for name in SOURCE_FILES:
        shutil.copy2(ROOT / name, source / name)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = work / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                    "--no-index", "--quiet", "--wheel-dir", str(wheels)], check=True, capture_output=True)
    (wheel,) = wheels.glob("citebot-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
                    "--quiet", str(wheel)], check=True, capture_output=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # After the install, so pip never saw this environment's (editable) citebot from there.
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "citebot_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return Installed(wheel=wheel, venv=venv, work=work)


def test_the_wheel_carries_the_defaults_and_the_seeds_as_written(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        assert wheel.read("retrieval/_data/config/default.toml") == (ROOT / "config" / "default.toml").read_bytes()
    seeds = {f"retrieval/_data/seeds/{p.name}" for p in (ROOT / "seeds").glob("*.txt")}
    assert seeds and seeds <= names


def test_the_installed_copy_imports_itself(installed, tmp_path):
    result = subprocess.run([str(installed.venv / "bin" / "python"), "-c",
                             "import bot.cli, retrieval.settings as s; print(bot.cli.__file__); "
                             "print(s.__file__); print(s.find_defaults())"],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True)
    cli, settings, defaults = result.stdout.splitlines()
    assert Path(cli).is_relative_to(installed.venv) and Path(settings).is_relative_to(installed.venv)
    assert "installed=True" in defaults and str(installed.venv) in defaults


@pytest.fixture(scope="module")
def installed_answer(installed):
    """The installed citebot's first answer, its index in the per-user data folder of a temporary XDG_DATA_HOME."""
    data, cwd = installed.work / "data", installed.work / "cwd"
    result = installed.run("ask", QUESTION, "--json", cwd=cwd, env=clean_env(XDG_DATA_HOME=str(data)))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), data, cwd


def cited(answer: dict) -> list[tuple]:
    """What an answer says and cites, without the paths, which differ between the two copies."""
    return [(p["n"], p["text"], tuple((Path(s["path"]).name, s["title"], s["outlet"], s["published"])
                                      for s in p["sources"])) for p in answer["passages"]]


def test_installed_citebot_answers_as_the_checkout_does(installed, installed_answer, tmp_path):
    answer, data, cwd = installed_answer
    assert answer["found"]
    assert (data / "citebot" / "index" / "citebot.sqlite").is_file()  # the per-user data folder
    assert list(cwd.iterdir()) == []  # nothing written where it was run
    for passage in answer["passages"]:
        for source in passage["sources"]:  # the seeds packed in the wheel
            assert Path(source["path"]).is_relative_to(installed.package_data / "seeds")
    env = clean_env(CITEBOT_INDEX__DIR=str(tmp_path / "checkout-index"))
    result = subprocess.run([sys.executable, "-m", "bot.cli", "ask", QUESTION, "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    checkout = json.loads(result.stdout)
    assert answer["answer"]["text"] == checkout["answer"]["text"]
    assert cited(answer) == cited(checkout)
    assert {Path(s["path"]).name for p in answer["passages"] for s in p["sources"]} == {
        "000_13573c5537cf727e.txt", "002_7474c7b7afbde563.txt"}


def test_citebot_home_and_the_per_user_folder_hold_the_index(installed, tmp_path):
    result = installed.run("config", "show", "--json", cwd=tmp_path / "cwd",
                           env=clean_env(XDG_DATA_HOME=str(tmp_path / "data")), timeout=60)
    shown = json.loads(result.stdout)
    assert shown["installed"] is True
    assert shown["settings"]["index.dir"] == {"value": str(tmp_path / "data" / "citebot" / "index"),
                                              "source": "per-user data folder",
                                              "from": str(tmp_path / "data" / "citebot")}
    assert Path(shown["settings"]["corpus.paths"]["value"][0]) == installed.package_data / "seeds"
    result = installed.run("config", "show", "--json", cwd=tmp_path / "cwd",
                           env=clean_env(CITEBOT_HOME=str(tmp_path / "home")), timeout=60)
    assert json.loads(result.stdout)["settings"]["index.dir"]["value"] == str(tmp_path / "home" / "index")


def test_missing_defaults_stop_citebot_with_one_line(installed, tmp_path):
    defaults = installed.package_data / "config" / "default.toml"
    hidden = defaults.with_suffix(".hidden")
    defaults.rename(hidden)
    try:
        result = installed.run("sources", cwd=tmp_path, env=clean_env(CITEBOT_HOME=str(tmp_path)), timeout=60)
    finally:
        hidden.rename(defaults)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("citebot: citebot's default settings cannot be found") and "reinstall" in line
    assert not (tmp_path / "index").exists()


def test_version_of_the_installed_copy(installed, tmp_path):
    result = installed.run("--version", cwd=tmp_path, env=clean_env(), timeout=60)
    assert result.stdout.strip() == "citebot 0.1.0"


def test_without_discord_py_the_cli_works_and_the_bot_names_the_extra(installed, installed_answer, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_DISCORD)
    _, data, _ = installed_answer
    env = clean_env(XDG_DATA_HOME=str(data), PYTHONPATH=str(blocker), CITEBOT_DISCORD_TOKEN="x" * 24)
    cwd = tmp_path / "cwd"
    check = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import discord"], cwd=cwd.parent,
                           env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError: No module named 'discord'" in check.stderr  # the blocker works

    article = tmp_path / "article.txt"
    article.write_text("Harbour news\n\nThe harbour of Vigo opened a new pier for ferries on Monday.\n")
    result = installed.run("ingest", str(article), "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 1
    result = installed.run("ask", QUESTION, "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["found"]
    result = installed.run("sources", "--format", "tsv", cwd=cwd, env=env, timeout=60)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4  # a header and three articles

    result = installed.run("discord", cwd=cwd, env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [DISCORD_EXTRA_LINE]
