"""`citebot check`: verify that the store and the vector segments agree, in one snapshot.

Every chunk has exactly one live vector, in the segment the store names, and every live vector
belongs to a chunk; segment files (vectors and postings) hold what the store says; word counts
and counters match the chunks; story rows name documents. This reads the whole index once: it is a check, not part of any question or commit.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from retrieval.features import content_stems
from retrieval.backends.embedded import postings as lexical
from retrieval.backends.embedded.segments import load_index
from retrieval.backends.embedded.schema import OUTLET_COUNTS
from retrieval.backends.embedded.store import Store


def segment_ids(index) -> np.ndarray:
    """Every id stored in a FAISS index (IDMap over anything, or IVF)."""
    import faiss

    if hasattr(index, "id_map"):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    ids = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy() for i in range(ivf.nlist)
           if lists.list_size(i)]
    return np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, dtype=np.int64)


def check(store: Store, folder: Path) -> list[str]:
    """Problems found, one line each; [] when the index is whole."""
    problems: list[str] = []
    with store.snapshot():
        db = store._db
        dim = store.get_meta("dim")
        chunk_segment = dict(db.execute("SELECT id, segment FROM chunks"))
        live_of: dict[int, int] = {}
        for row in store.segments():
            try:
                index = load_index(folder / row.file)
            except Exception as error:  # noqa: BLE001 - reported, not raised
                problems.append(f"segment {row.id}: file {row.file} cannot be read ({type(error).__name__})")
                continue
            if dim is not None and index.d != int(dim):
                problems.append(f"segment {row.id}: vectors of dimension {index.d}, the index is {dim}")
            ids = segment_ids(index)
            if len(ids) != row.vectors:
                problems.append(f"segment {row.id}: file holds {len(ids)} vectors, the store says {row.vectors}")
            counts = Counter(ids.tolist())
            repeated = [i for i, n in counts.items() if n > 1]
            if repeated:
                problems.append(f"segment {row.id}: {len(repeated)} ids stored twice, e.g. {repeated[0]}")
            dead = {i for _, i in store.tombstones(segment=row.id)}
            if len(dead) != row.dead:
                problems.append(f"segment {row.id}: {len(dead)} tombstones, the store counts {row.dead}")
            if dead - counts.keys():
                problems.append(f"segment {row.id}: {len(dead - counts.keys())} tombstones for ids it does not hold")
            problems += _check_postings(folder, row, set(counts), dead)
            for i in counts.keys() - dead:
                if i in live_of:
                    problems.append(f"chunk {i}: live in segments {live_of[i]} and {row.id}")
                live_of[i] = row.id
        without = [i for i in chunk_segment if i not in live_of]
        if without:
            problems.append(f"{len(without)} chunks have no live vector, e.g. chunk {without[0]}")
        orphans = [i for i in live_of if i not in chunk_segment]
        if orphans:
            problems.append(f"{len(orphans)} live vectors belong to no chunk, e.g. id {orphans[0]}")
        misplaced = [i for i, s in chunk_segment.items() if i in live_of and live_of[i] != s]
        if misplaced:
            problems.append(f"{len(misplaced)} chunks name the wrong segment, e.g. chunk {misplaced[0]}")
        documents = db.execute("SELECT count(*) FROM documents").fetchone()[0]
        if store.count_chunks() != len(chunk_segment) or store.count_documents() != documents:
            problems.append(f"counters say {store.count_documents()} documents and {store.count_chunks()} chunks; "
                            f"the store holds {documents} and {len(chunk_segment)}")
        df: Counter[str] = Counter()
        for (text,) in db.execute("SELECT text FROM chunks"):
            df.update(set(content_stems(text)))
        kept = dict(db.execute("SELECT stem, df FROM stems"))
        if kept != dict(df):
            wrong = sorted(set(kept.items()) ^ set(df.items()))[:1]
            problems.append(f"word counts differ from the chunks, e.g. {wrong}")
        problems += _check_stories(store)
    return problems


def _check_stories(store: Store) -> list[str]:
    """Wire copies: every story row and band names a document, the copies counter adds up, and the
    outlets table counts what the documents hold."""
    db = store._db
    problems = []
    stray = db.execute("SELECT count(*) FROM stories WHERE document NOT IN (SELECT id FROM documents)").fetchone()[0]
    stray += db.execute("SELECT count(*) FROM story_bands WHERE document NOT IN (SELECT document FROM stories)"
                        ).fetchone()[0]
    if stray:
        problems.append(f"{stray} story rows or bands name no document")
    counted = dict(db.execute(OUTLET_COUNTS))
    outlets = store.outlets()
    if outlets != counted:
        problems.append(f"the outlets table lists {len(outlets)} outlets; the documents have {len(counted)}")
    members, stories = db.execute("SELECT count(*), count(DISTINCT story) FROM stories").fetchone()
    if store.count_copies() != members - stories:
        problems.append(f"the copies counter says {store.count_copies()}; the stories hold {members - stories}")
    return problems


def _check_postings(folder: Path, row, held: set[int], dead: set[int]) -> list[str]:
    """The segment's postings twin: readable, and holding its live chunks (a dead one may linger)."""
    try:
        postings = lexical.load(folder / lexical.lexical_name(row.file))
    except (OSError, ValueError, KeyError) as error:
        return [f"segment {row.id}: postings file {lexical.lexical_name(row.file)} cannot be read ({error})"]
    ids = set(postings.ids.tolist())
    problems = []
    if len(ids) != len(postings.ids):
        problems.append(f"segment {row.id}: postings list a chunk twice")
    if (held - dead) - ids:
        problems.append(f"segment {row.id}: {len((held - dead) - ids)} live chunks have no postings")
    if ids - held:
        problems.append(f"segment {row.id}: postings for {len(ids - held)} chunks it does not hold")
    if len(postings.starts) != len(postings.terms) + 1 or (len(postings.docs) and (
            int(postings.docs.max()) >= len(ids) or int(postings.starts[-1]) != len(postings.docs))):
        problems.append(f"segment {row.id}: postings file is inconsistent")
    return problems
