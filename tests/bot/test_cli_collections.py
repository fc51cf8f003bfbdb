"""`--collection NAME` on every command, `citebot collections`, and `citebot run` serving every collection."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.bot.test_feeds_cli import HTML, RSS, citebot, environment
from tests.conftest import ROOT
from tests.retrieval.test_feeds import page, rss
from tests.retrieval.webserver import Route

pytestmark = pytest.mark.slow


def test_each_collection_answers_from_its_own_articles_only(tmp_path):
    index = tmp_path / "index"
    (tmp_path / "texel.txt").write_text("The ferry to Texel was cancelled on Monday because of the storm.")
    (tmp_path / "vlieland.txt").write_text("The ferry to Vlieland sails again on Tuesday after the storm.")
    assert citebot("ingest", str(tmp_path / "texel.txt"), index=index).returncode == 0
    assert citebot("--collection", "islands", "ingest", str(tmp_path / "vlieland.txt"), index=index).returncode == 0
    listed = [json.loads(line) for line in citebot("collections", "--json", index=index).stdout.splitlines()]
    assert [(c["name"], c["documents"]) for c in listed] == [("default", 1), ("islands", 1)]
    assert listed[1]["folder"] == str(index / "collections" / "islands")
    for where, island, other in (([], "Texel", "Vlieland"), (["--collection", "islands"], "Vlieland", "Texel")):
        answer = json.loads(citebot("ask", "which ferry was affected by the storm?", "--json", *where,
                                    index=index).stdout)
        texts = " ".join(p["text"] for p in answer["passages"])
        assert island in texts and other not in texts
    # the option after the command too, and from the environment
    sources = citebot("sources", "--json", "--collection", "islands", index=index)
    assert [s["location"] for s in json.loads(sources.stdout)] == [str(tmp_path / "vlieland.txt")]


@pytest.mark.parametrize("name", ["../up", "Islands", "a b"])
def test_a_bad_collection_name_is_one_line_and_creates_nothing(tmp_path, name):
    index = tmp_path / "index"
    result = citebot("--collection", name, "sources", index=index)
    assert result.returncode == 2 and "cannot name a collection" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "up").exists() and not (index / "collections").exists()


def test_run_follows_the_feeds_of_every_collection_into_each_ones_index(web, tmp_path):
    index = tmp_path / "index"
    web.routes["/h1"] = Route(page("Harbour", "A zqtugboat sank in the harbour."), headers=HTML)
    web.routes["/w1"] = Route(page("Wire", "A zqglider landed on the beach."), headers=HTML)
    web.routes["/harbour"] = Route(rss([("h1", web.url("/h1"), "")]), headers=RSS)
    web.routes["/wire"] = Route(rss([("w1", web.url("/w1"), "")]), headers=RSS)
    assert citebot("feeds", "add", web.url("/wire"), "--every", "10s", index=index).returncode == 0
    assert citebot("--collection", "harbour", "feeds", "add", web.url("/harbour"), "--every", "10s",
                   index=index).returncode == 0
    env = environment(index, CITEBOT_FETCH__ALLOW_PRIVATE="true")
    loop = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-v"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts, err = {}, ""
    try:
        deadline = time.monotonic() + 120
        while not {"/h1", "/w1"} <= set(web.paths()) and time.monotonic() < deadline:
            time.sleep(0.2)
        while time.monotonic() < deadline:
            counts = {c["name"]: c["documents"] for c in map(
                json.loads, citebot("collections", "--json", index=index).stdout.splitlines())}
            if counts == {"default": 1, "harbour": 1}:
                break
            time.sleep(0.5)
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=30)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert counts == {"default": 1, "harbour": 1}, err
    assert loop.returncode == 0 and "Traceback" not in err
    said = " ".join(err.split())  # the console wraps long lines
    assert "default: 1 feeds" in said and "harbour: 1 feeds" in said
    harbour = json.loads(citebot("sources", "--json", "--collection", "harbour", index=index).stdout)
    assert [s["location"] for s in harbour] == [web.url("/h1")]
