"""`citebot feeds`, `citebot ingest URL` and `citebot run`, as a user runs them, against a real server on 127.0.0.1."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.retrieval.test_feeds import page, rss
from tests.retrieval.webserver import Route

pytestmark = pytest.mark.slow

HTML = {"Content-Type": "text/html; charset=utf-8"}
RSS = {"Content-Type": "application/rss+xml"}


def environment(index, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__DIR": str(index), "CITEBOT_FETCH__HOST_INTERVAL_SECONDS": "0",
                "CITEBOT_CORPUS__PATHS": "[]", **extra})
    return env


def citebot(*args, index, private=True):
    env = environment(index, **({"CITEBOT_FETCH__ALLOW_PRIVATE": "true"} if private else {}))
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def serve_two_page_feed(web) -> None:
    """/feed with two entries, /a1 (a strike) and /a2 (ferries cancelled)."""
    web.routes["/a1"] = Route(page("Strike grows", "Dock workers walked out in Rotterdam on Monday."), headers=HTML)
    web.routes["/a2"] = Route(page("Ferries", "All ferries to the islands were cancelled by the storm."),
                              headers=HTML)
    web.routes["/feed"] = Route(rss([("1", web.url("/a1"), ""), ("2", web.url("/a2"), "")]), headers=RSS)


def test_follow_a_feed_poll_it_ask_from_it_and_ingest_a_page(web, tmp_path):
    index = tmp_path / "index"
    serve_two_page_feed(web)

    added = citebot("feeds", "add", web.url("/feed"), "--outlet", "Harbour Herald", "--every", "15m", index=index)
    assert added.returncode == 0, added.stderr
    listed = [json.loads(line) for line in citebot("feeds", "list", "--json", index=index).stdout.splitlines()]
    assert [(f["url"], f["outlet"], f["every_s"], f["last_poll"]) for f in listed] == [
        (web.url("/feed"), "Harbour Herald", 900.0, None)]

    polled = citebot("feeds", "poll", "--json", index=index)
    assert polled.returncode == 0, polled.stderr
    [result] = [json.loads(line) for line in polled.stdout.splitlines()]
    assert (result["entries"], result["new"], result["added"], result["error"]) == (2, 2, 2, None)

    asked = citebot("ask", "which ferries were cancelled?", "--json", index=index)
    answer = json.loads(asked.stdout)
    assert answer["found"], asked.stderr
    top = answer["passages"][0]
    assert "ferries" in top["text"] and top["sources"][0]["outlet"] == "Harbour Herald"
    assert top["sources"][0]["url"] == web.url("/a2")

    again = [json.loads(line) for line in citebot("feeds", "poll", "--json", index=index).stdout.splitlines()]
    assert (again[0]["new"], again[0]["added"]) == (0, 0)
    status = json.loads(citebot("feeds", "list", "--json", index=index).stdout)
    assert status["entries_taken"] == 2 and status["last_error"] is None and status["last_new_entry"]

    web.routes["/a3"] = Route(page("Talks", "Union and port talks resume on Thursday."), headers=HTML)
    ingested = citebot("ingest", web.url("/a3?utm_source=x"), "--json", index=index)
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["added"] == 1
    keys = {row["location"] for row in json.loads(citebot("sources", "--json", index=index).stdout)}
    assert web.url("/a3") in keys

    refused = citebot("ingest", web.url("/a1"), index=tmp_path / "other", private=False)
    assert refused.returncode == 1
    assert "private, loopback or link-local" in refused.stderr and "Traceback" not in refused.stderr

    removed = citebot("feeds", "remove", web.url("/feed"), index=index)
    assert removed.returncode == 0
    gone = citebot("feeds", "remove", web.url("/feed"), index=index)
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1


def test_bad_feed_arguments_are_one_line_each(tmp_path):
    for args in (("feeds", "add", "not-a-url"), ("feeds", "add", "https://example.com/rss", "--every", "soon"),
                 ("feeds", "add", "https://example.com/rss", "--every", "2s")):
        result = citebot(*args, index=tmp_path / "index")
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, args


def test_run_picks_up_a_new_entry_and_stops_on_sigterm(web, tmp_path):
    index = tmp_path / "index"
    web.routes["/a1"] = Route(page("First", "The harbour opened at dawn."), headers=HTML)
    items = [("1", web.url("/a1"), "")]
    web.routes["/feed"] = lambda handler: Route(rss(items), headers=RSS)
    assert citebot("feeds", "add", web.url("/feed"), "--every", "10s", index=index).returncode == 0
    env = environment(index, CITEBOT_FETCH__ALLOW_PRIVATE="true")
    loop = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "-v"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while web.paths().count("/feed") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        web.routes["/a2"] = Route(page("Second", "A zqlighthouse keeper was rescued."), headers=HTML)
        items.append(("2", web.url("/a2"), ""))
        while "/a2" not in web.paths() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "/a2" in web.paths(), "the loop never fetched the new entry"
        while time.monotonic() < deadline:
            listed = json.loads(citebot("feeds", "list", "--json", index=index).stdout)
            if listed["entries_taken"] == 2:
                break
            time.sleep(0.5)
        assert listed["entries_taken"] == 2
        loop.send_signal(signal.SIGTERM)
        out, err = loop.communicate(timeout=30)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0, err
    assert "Traceback" not in err
    answer = json.loads(citebot("ask", "who was rescued?", "--json", index=index).stdout)
    assert any("zqlighthouse" in p["text"] for p in answer["passages"])


def test_the_discord_bot_polls_the_feeds_beside_it_and_stops_them_with_it(monkeypatch, tmp_path):
    """In this process, with the bot itself replaced: the poller thread runs beside it and ends with it."""
    import threading

    from bot import cli, discord_app

    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "index"))
    seen = {}

    def run_bot(settings, answerer, answerers=None, follow=None, shard=None):
        seen["threads"] = {t.name: t for t in threading.enumerate()}
        seen["answerers"] = answerers
        return 0

    monkeypatch.setattr(discord_app, "run_bot", run_bot)
    monkeypatch.setattr(cli, "_answerer", lambda settings: object())
    monkeypatch.setattr(cli, "check_token", lambda settings: None)
    assert cli.main(["discord"]) == 0
    assert list(seen["answerers"]) == ["default"]
    poller = seen["threads"].get("citebot-poller")
    assert poller is not None, "no poller thread beside the bot"
    poller.join(timeout=5)
    assert not poller.is_alive(), "the poller outlived the bot"


def test_the_bot_follows_collections_chosen_on_discord_at_start_and_later_ones_once(monkeypatch, tmp_path):
    """A collection an admin chose with /collection is opened and followed at start; one chosen later, once."""
    import threading

    from bot import cli, discord_app
    from bot.servers import ServerBook

    for name in [n for n in os.environ if n.startswith("CITEBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CITEBOT_INDEX__DIR", str(tmp_path / "index"))
    ServerBook(tmp_path / "index" / "servers.sqlite").set_collection(42, "server-42")

    class Answerer:
        def __init__(self, settings):
            self.settings = settings

        def sibling(self, settings):
            return Answerer(settings)

    seen = {}

    def pollers() -> int:
        return sum(t.name == "citebot-poller" and t.is_alive() for t in threading.enumerate())

    def run_bot(settings, answerer, answerers=None, follow=None, shard=None):
        seen["answerers"] = dict(answerers)
        seen["at_start"] = pollers()
        later = answerer.sibling(settings)
        follow("server-7", later)
        follow("server-7", later)  # asked again: no second poller
        follow("server-42", answerers["server-42"])  # followed since the start
        seen["after"] = pollers()
        return 0

    monkeypatch.setattr(discord_app, "run_bot", run_bot)
    monkeypatch.setattr(cli, "_answerer", Answerer)
    monkeypatch.setattr(cli, "check_token", lambda settings: None)
    before = pollers()
    assert cli.main(["discord"]) == 0
    assert set(seen["answerers"]) == {"default", "server-42"}
    assert seen["answerers"]["server-42"].settings.index.dir == tmp_path / "index" / "collections" / "server-42"
    assert (seen["at_start"], seen["after"]) == (before + 2, before + 3)


def test_watch_follows_a_folder_and_stops_on_sigterm(tmp_path):
    index, folder = tmp_path / "index", tmp_path / "news"
    folder.mkdir()
    (folder / "a.txt").write_text("The harbour opened at dawn, officials said.")
    loop = subprocess.Popen([sys.executable, "-m", "bot.cli", "watch", str(folder)], cwd=ROOT,
                            env=environment(index), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listed() -> set:
        result = citebot("sources", "--json", index=index)
        return {row["location"] for row in json.loads(result.stdout or "[]")} if result.returncode == 0 else set()

    try:
        deadline = time.monotonic() + 180
        while str((folder / "a.txt").resolve()) not in listed() and time.monotonic() < deadline:
            time.sleep(0.5)
        (folder / "b.txt").write_text("A lighthouse keeper was rescued from the rocks.")
        while str((folder / "b.txt").resolve()) not in listed() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert listed() == {str((folder / "a.txt").resolve()), str((folder / "b.txt").resolve())}
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=30)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0 and "Traceback" not in err, err
    refused = citebot("watch", str(folder / "a.txt"), index=index)
    assert refused.returncode != 0 and "is not a folder" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def hold_write_lock(index):
    """Another writer's long ingest, as a real lock on the index folder: release by closing the file."""
    index.mkdir(parents=True, exist_ok=True)
    handle = open(index / "write.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def test_feeds_poll_on_a_busy_index_says_so_in_one_line_and_keeps_the_pages(web, tmp_path):
    index = tmp_path / "index"
    serve_two_page_feed(web)
    assert citebot("feeds", "add", web.url("/feed"), index=index).returncode == 0
    env = environment(index, CITEBOT_FETCH__ALLOW_PRIVATE="true", CITEBOT_INDEX__LOCK_WAIT_SECONDS="1")
    lock = hold_write_lock(index)
    try:
        busy = subprocess.run([sys.executable, "-m", "bot.cli", "feeds", "poll"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    finally:
        lock.close()
    assert busy.returncode == 1 and "Traceback" not in busy.stderr, busy.stderr
    [line] = busy.stderr.strip().splitlines()
    assert line.startswith(f"{web.url('/feed')}: 2 articles fetched but not indexed (another citebot process")
    [status] = [json.loads(row) for row in citebot("feeds", "list", "--json", index=index).stdout.splitlines()]
    assert status["last_poll"] and "not indexed" in status["last_error"] and status["entries_taken"] == 0

    again = subprocess.run([sys.executable, "-m", "bot.cli", "feeds", "poll", "--json"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    [result] = [json.loads(row) for row in again.stdout.splitlines()]
    assert (result["error"], result["added"]) == (None, 2)
    assert web.paths().count("/a1") == web.paths().count("/a2") == 1  # fetched once, indexed at the next poll


def test_watch_keeps_what_changed_while_the_index_was_busy(tmp_path):
    index, folder = tmp_path / "index", tmp_path / "news"
    folder.mkdir()
    (folder / "a.txt").write_text("The harbour opened at dawn, officials said.")
    env = environment(index, CITEBOT_INDEX__LOCK_WAIT_SECONDS="1")
    loop = subprocess.Popen([sys.executable, "-m", "bot.cli", "watch", str(folder)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def listed() -> set:
        result = citebot("sources", "--json", index=index)
        return {row["location"] for row in json.loads(result.stdout or "[]")} if result.returncode == 0 else set()

    written = [folder / f"b{burst}-{n}.txt" for burst in range(3) for n in range(4)]
    try:
        deadline = time.monotonic() + 180
        while str((folder / "a.txt").resolve()) not in listed() and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)  # the watch is set up once the catch-up is in
        lock = hold_write_lock(index)
        try:
            for burst in range(3):  # several batches, each failing at least once
                for path in written[burst * 4:(burst + 1) * 4]:
                    path.write_text(f"Boat {path.stem} docked at noon after the storm had passed.")
                time.sleep(2.5)
            assert listed() == {str((folder / "a.txt").resolve())}
        finally:
            lock.close()
        want = {str((folder / "a.txt").resolve())} | {str(p.resolve()) for p in written}
        while listed() != want and time.monotonic() < deadline:
            time.sleep(0.5)
        assert listed() == want
        loop.send_signal(signal.SIGTERM)
        _, err = loop.communicate(timeout=60)
    finally:
        if loop.poll() is None:
            loop.kill()
    assert loop.returncode == 0 and "Traceback" not in err, err
    assert "not indexed yet (another citebot process has been writing to" in err


def test_ingest_and_feeds_poll_end_at_the_deadline_against_hostile_servers(web, tmp_path):
    from tests.retrieval.test_fetch_hostile import EMPTY_STORED_BLOCK, HARD_STOP_S, drip, gzip_head

    index = tmp_path / "index"
    web.routes["/page.html"] = Route(raw=drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.2, b"\r\n\r\n"))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n"
    web.routes["/feed"] = Route(raw=drip(head + gzip_head(), EMPTY_STORED_BLOCK * 1000, 0.001))
    env = environment(index, CITEBOT_FETCH__ALLOW_PRIVATE="true", CITEBOT_FETCH__TIMEOUT_SECONDS="2",
                      CITEBOT_FETCH__MAX_FEED_MB="1")
    started = time.monotonic()
    ingest = subprocess.run([sys.executable, "-m", "bot.cli", "ingest", web.url("/page.html")], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert ingest.returncode == 1 and "Traceback" not in ingest.stderr
    assert f"failed: {web.url('/page.html')}: took longer than 2 s" in ingest.stderr
    assert took < HARD_STOP_S  # the server drips for 12 s: a fetch that waited for it would take longer

    assert citebot("feeds", "add", web.url("/feed"), index=index).returncode == 0
    polled = subprocess.run([sys.executable, "-m", "bot.cli", "feeds", "poll", "--json"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    [result] = [json.loads(line) for line in polled.stdout.splitlines()]
    assert polled.returncode == 1 and "more than the limit of 1,048,576" in result["error"], result
    assert web.sent < 32 * 2**20  # not the gigabytes an uncapped read takes in the same time
