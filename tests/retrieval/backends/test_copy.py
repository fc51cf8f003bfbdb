"""`citebot migrate --to`'s copy (retrieval/backends/copy.py) between the two real engines: everything comes
across as stored, and a copy killed (kill -9) after a committed batch goes on where it stopped."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from retrieval.backends.copy import copy_index
from retrieval.models import Article
from tests.conftest import ROOT
from tests.retrieval.backends.test_engines import ARTICLES, make  # noqa: F401 (the fixture)

STORY = ARTICLES[1].text + " The union said talks would resume on Thursday at the port authority's offices."
WIRE = [Article(key=f"w{n}", outlet=f"Outlet {n}", text=STORY + ("" if n == 0 else f" (Outlet {n})")) for n in range(3)]
MORE = [Article(key=f"m{n}", title=f"Item {n}", text=f"Council item {n} was approved on Friday. It costs {n} euros.")
        for n in range(8)]


def _vectors_by_chunk(store) -> dict[str, np.ndarray]:
    found = {}
    for _, _, ids in store.articles(0, 1000):
        chunks, vectors = store.chunks(ids), store.vectors(ids)
        found.update({chunks[i].chunk_id: (vectors[i], chunks[i].sentence_vectors, chunks[i].sentences) for i in ids})
    return found


@pytest.mark.parametrize("source_engine, target_engine", [("embedded", "postgres"), ("postgres", "embedded")])
def test_a_copy_keeps_documents_vectors_sentences_stories_and_answers(make, source_engine, target_engine):
    source, target = make(source_engine), make(target_engine)
    source.ingest_articles(ARTICLES + WIRE + MORE)
    source.remove(["m0"])  # a gap in the source's positions
    report = copy_index(source.store, target.store, copies_threshold=source.settings.copies.threshold, batch=3)
    assert (report.documents, report.copied, report.skipped) == (13, 13, 0)
    target.store.refresh()
    assert target.store.doc_ids_by_key() == source.store.doc_ids_by_key()
    assert target.store.count_copies() == source.store.count_copies() >= 2
    assert target.store.outlets() == source.store.outlets()
    kept, copied = _vectors_by_chunk(source.store), _vectors_by_chunk(target.store)
    assert kept.keys() == copied.keys() and report.chunks == len(kept)
    for chunk_id, (vector, sentence_vectors, sentences) in kept.items():
        assert np.array_equal(copied[chunk_id][0], vector) and np.array_equal(copied[chunk_id][1], sentence_vectors)
        assert copied[chunk_id][2] == sentences
    for question in ("which ferries were cancelled?", "how many workers joined the strike?"):
        # the best passages alike (the tail holds near-ties of the council items, ordered by each engine's ids)
        assert [p.text for p in target.answer(question).passages][:2] == [
            p.text for p in source.answer(question).passages][:2]
    assert source.check() == [] and target.check() == []
    again = copy_index(source.store, target.store, copies_threshold=source.settings.copies.threshold)
    assert (again.copied, again.skipped) == (0, 13)  # a finished copy run again copies nothing


def test_a_target_holding_other_documents_is_refused_and_left_alone(make):
    source, target = make("embedded"), make("postgres")
    source.ingest_articles(ARTICLES)
    target.ingest_articles(MORE[:1])
    with pytest.raises(Exception, match="already holds 1 documents that .* does not .*'m0'.*copy into an empty index"):
        copy_index(source.store, target.store, copies_threshold=None)
    assert target.store.doc_ids_by_key().keys() == {"m0"}


_CHILD = """
import os, signal, sys
from retrieval.backends import open_index
from retrieval.backends.copy import copy_index
from retrieval.settings import load_settings

source = open_index(load_settings(index={"dir": sys.argv[1]}, embedding={"model": "fake"}))
target = open_index(load_settings(index={"dir": sys.argv[1] + "-unused", "url": sys.argv[2]}, embedding={"model": "fake"}))
batches = []

def progress(report):
    batches.append(report.copied)
    if len(batches) == 2:  # two batches committed: die the hard way, as a killed process does
        os.kill(os.getpid(), signal.SIGKILL)

copy_index(source, target, copies_threshold=0.5, batch=2, progress=progress)
"""


def test_a_copy_killed_after_two_batches_goes_on_where_it_stopped(make, postgres_url):
    source = make("embedded")
    source.ingest_articles(ARTICLES + WIRE + MORE)
    source.store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEBOT_")}
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(_CHILD), str(source.settings.index.dir), postgres_url],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    target = make("postgres", index={"url": postgres_url})
    assert len(target.store.doc_ids_by_key()) == 4  # the two committed batches, nothing of the third
    assert target.check() == []
    report = copy_index(source.store, target.store, copies_threshold=0.5)
    assert (report.copied, report.skipped) == (10, 4)
    assert target.store.doc_ids_by_key() == source.store.doc_ids_by_key() and target.check() == []
    assert target.store.count_copies() == source.store.count_copies()
