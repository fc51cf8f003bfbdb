"""Read replicas (issue 24): questions read from a streaming standby (`index.read_url`), writes go to the primary.

A real primary and a real hot standby made by `pg_basebackup -R` (tests/pgcluster.py), unix sockets only.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from retrieval.models import Article
from retrieval.pipeline import Answerer
from tests.fakes import FakeEmbedder
from tests.pgcluster import Cluster

ROOT = Path(__file__).resolve().parents[3]
WORKER = ROOT / "tests" / "retrieval" / "ingest_worker.py"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("replicas")) as made:
        yield made


def database(cluster, name: str) -> tuple[str, str]:
    with psycopg.connect(cluster.primary.uri(), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    cluster.caught_up()
    return cluster.primary.uri(name), cluster.standby.uri(name)


def answerer_for(settings_for, url: str, read_url: str | None = None) -> Answerer:
    index = {"url": url, **({"read_url": read_url} if read_url else {})}
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, index=index,
                            answer={"min_score": 0.0, "min_mixed_score": -100.0, "min_support": -100.0})
    return Answerer(settings, FakeEmbedder())


def test_questions_read_from_the_replica_which_answers_from_what_it_has(cluster, settings_for):
    primary, standby = database(cluster, "reads")
    answerer = answerer_for(settings_for, primary, standby)
    try:
        answerer.ingest_articles([Article(key="a", title="Ferries", outlet="Herald",
                                          text="All ferries to the islands were cancelled because of the storm.")])
        cluster.caught_up()
        assert answerer.answer("which ferries were cancelled?").found
        about = answerer.store.server()
        assert about["read_from"] and about["lag_bytes"] == 0 and about["lag_s"] == 0.0
        with psycopg.connect(standby, autocommit=True) as db:
            db.execute("SELECT pg_wal_replay_pause()")
            try:
                answerer.ingest_articles([Article(key="b", title="Cranes", outlet="Herald",
                                                  text="New zqcranes arrived at the port of Gdansk on Friday.")])
                about = answerer.store.server()
                assert about["lag_bytes"] > 0  # the replica has not replayed the commit ...
                stale = answerer.answer("which zqcranes arrived?")
                assert not any("zqcranes" in p.text for p in stale.passages)  # ... and answers from what it has
                assert answerer.store.doc_id_of("b") is not None  # the writer sees its commit on the primary
            finally:
                db.execute("SELECT pg_wal_replay_resume()")
        deadline = time.monotonic() + 5
        while not any("zqcranes" in p.text for p in answerer.answer("which zqcranes arrived?").passages):
            assert time.monotonic() < deadline, "the replica never showed the commit"
            time.sleep(0.05)
        assert answerer.check() == []
    finally:
        answerer.store.close()


def test_doctor_names_the_replica_and_its_lag_without_the_password(cluster, tmp_path, settings_for):
    primary, standby = database(cluster, "doctor")
    answerer_for(settings_for, primary).store.close()  # the index's tables, made on the primary ...
    cluster.caught_up()  # ... and replayed by the standby
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    env.update({"CITEBOT_INDEX__URL": primary, "CITEBOT_INDEX__READ_URL": standby.replace("postgres@", "postgres:s3cret@"),
                "CITEBOT_INDEX__DIR": str(tmp_path / "unused"), "CITEBOT_CORPUS__PATHS": "[]"})
    done = subprocess.run([sys.executable, "-m", "bot.cli", "doctor"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    text = done.stdout + done.stderr
    assert "questions read from the replica" in text and "has replayed everything" in text, text
    assert "s3cret" not in text


def test_a_replica_without_the_index_yet_is_one_line(cluster, settings_for):
    primary, standby = database(cluster, "empty")
    with psycopg.connect(standby, autocommit=True) as db:
        db.execute("SELECT pg_wal_replay_pause()")
    try:
        answerer = answerer_for(settings_for, primary, standby)  # makes the schema on the primary only
        with pytest.raises(Exception, match="holds no index of this collection yet"):
            answerer.answer("anything?")
        answerer.store.close()
    finally:
        with psycopg.connect(standby, autocommit=True) as db:
            db.execute("SELECT pg_wal_replay_resume()")


def test_the_primary_killed_mid_ingest_leaves_both_servers_at_the_last_commit(cluster, settings_for, tmp_path):
    primary, standby = database(cluster, "crash")
    folder = tmp_path / "articles"
    folder.mkdir()
    for n in range(400):
        (folder / f"a{n:03}.txt").write_text(f"Report {n}\n\nThe port of town {n} handled {n * 11} ships this "
                                             f"month. Officials in town {n} expect more cargo next year.")
    env = {**os.environ, "TEST_INDEX_URL": primary, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, str(WORKER), str(tmp_path / "index"), "slow", str(folder)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with psycopg.connect(primary, autocommit=True) as db:
                if db.execute("SELECT to_regclass('citebot.citebot_meta') IS NOT NULL").fetchone()[0] and (
                        db.execute("SELECT value::int FROM citebot.citebot_meta WHERE key = 'generation'").fetchone()
                        or (0,))[0] >= 2:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the ingest never committed twice")
        cluster.primary.kill()  # in the middle of the next batches
        worker.wait(60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode != 0  # it lost its database mid-ingest
    cluster.primary.start()
    cluster.caught_up(60)
    on_primary = answerer_for(settings_for, primary)
    on_standby = answerer_for(settings_for, standby)
    try:
        for store in (on_primary.store, on_standby.store):
            assert store.check() == []
        facts = [(s.store.generation, s.store.count_documents(), sorted(r.key for r in s.sources()))
                 for s in (on_primary, on_standby)]
        assert facts[0] == facts[1] and facts[0][0] >= 2 and 0 < facts[0][1] < 400
    finally:
        on_primary.store.close()
        on_standby.store.close()
