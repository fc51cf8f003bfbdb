"""PostgreSQL: a collection as a schema of its own against one shared table with a collection column, for
dense search (the part the layouts change), side by side.

usage: python benchmarks/pg_collection_layout.py --url URL [--size 20000] [--collections 10] [--questions 100]
                                                [--json]

Collection A is the first SIZE chunks of the index benchmarks/scale.py copied into PostgreSQL (`--backend
postgres`, schema `citebot` of the database URL names). Two layouts hold it:
- schema: a table of A alone with its own HNSW index (`layout_own.chunks`), as a schema per collection keeps it;
- shared: one table `layout_shared.chunks (collection, id, vector)` holding A and COLLECTIONS-1 other
  collections of the same size (A's vectors shuffled and perturbed, renormalised: the same distribution,
  other neighbours), one HNSW index over all of it; a question filters `WHERE collection = 'a'`.
Both are built with pgvector's defaults (m 16, ef_construction 64) and kept between runs. Each of scale.py's
question vectors is searched in both (interleaved) for its top 40 with hnsw.ef_search 200; in the shared
table also with pgvector 0.8's iterative scan (relaxed order), which walks on until enough rows pass the
filter. Printed: recall@40 against A's exact top 40, rows returned, p50 and p95 per layout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

K, EF = 40, 200


def _literal(vector) -> str:
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def build(db, size: int, collections: int, dim: int, seed: int = 7) -> int:
    """layout_own.chunks (A) and layout_shared.chunks (A and the others), each with its HNSW index; the shared
    table's rows. Kept between runs."""
    if db.execute("SELECT to_regclass('layout_shared.chunks') IS NOT NULL").fetchone()[0]:
        return db.execute("SELECT count(*) FROM layout_shared.chunks").fetchone()[0]
    rows = db.execute("SELECT id, vector::text FROM citebot.chunks ORDER BY id LIMIT %s", (size,)).fetchall()
    ids = np.array([r[0] for r in rows])
    vectors = np.array([np.array(r[1].strip("[]").split(","), dtype=np.float32) for r in rows])
    rng = np.random.default_rng(seed)
    db.execute("SET maintenance_work_mem = '4GB'")
    for schema in ("layout_own", "layout_shared"):
        db.execute(f"CREATE SCHEMA {schema}")
        db.execute(f"CREATE TABLE {schema}.chunks (collection text NOT NULL, id bigint NOT NULL,"
                   f" vector vector({dim}) NOT NULL)")
        with db.cursor() as cursor, cursor.copy(f"COPY {schema}.chunks (collection, id, vector) FROM STDIN") as copy:
            for n in range(1 if schema == "layout_own" else collections):
                block = vectors
                if n > 0:
                    block = vectors[rng.permutation(len(vectors))] + 0.3 * rng.standard_normal(
                        vectors.shape).astype(np.float32) / np.sqrt(dim)
                    block /= np.linalg.norm(block, axis=1, keepdims=True)
                name = chr(ord("a") + n)
                for i, vector in zip(ids, block):
                    copy.write_row((name, int(i) + n * 10**9, _literal(vector)))
        db.execute(f"CREATE INDEX ON {schema}.chunks USING hnsw (vector vector_ip_ops)")
        db.execute(f"CREATE INDEX ON {schema}.chunks (collection)")
        db.execute(f"VACUUM ANALYZE {schema}.chunks")
    return len(ids) * collections


def main(argv: list[str] | None = None) -> None:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the database scale.py copied an index into")
    parser.add_argument("--vectors", type=Path, default=Path("/tmp/citebot-scale/100000/question-vectors.npy"),
                        help="question vectors (scale.py saves them; default %(default)s)")
    parser.add_argument("--size", type=int, default=20_000, help="chunks per collection (default %(default)s)")
    parser.add_argument("--collections", type=int, default=10, help="in the shared table (default %(default)s)")
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    queries = np.load(args.vectors).astype(np.float32)[: args.questions]
    with psycopg.connect(args.url, autocommit=True) as db:
        dim = int(db.execute("SELECT value FROM citebot.citebot_meta WHERE key = 'dim'").fetchone()[0])
        total = build(db, args.size, args.collections, dim)
        size = db.execute("SELECT count(*) FROM layout_own.chunks").fetchone()[0]
        db.execute(f"SET hnsw.ef_search = {EF}")
        exact = []
        db.execute("SET enable_indexscan = off")
        for q in queries:
            rows = db.execute("SELECT -(vector <#> %s::vector) AS s FROM layout_own.chunks ORDER BY s DESC LIMIT %s",
                              (_literal(q), K)).fetchall()
            exact.append(rows[-1][0] - 1e-5)
        db.execute("RESET enable_indexscan")
        layouts = {
            "schema": ("off", "SELECT -(vector <#> %(q)s::vector) FROM layout_own.chunks"
                              " ORDER BY vector <#> %(q)s::vector LIMIT %(k)s"),
            "shared": ("off", "SELECT -(vector <#> %(q)s::vector) FROM layout_shared.chunks WHERE collection = 'a'"
                              " ORDER BY vector <#> %(q)s::vector LIMIT %(k)s"),
            "shared_iterative": ("relaxed_order", "SELECT -(vector <#> %(q)s::vector) FROM layout_shared.chunks"
                                 " WHERE collection = 'a' ORDER BY vector <#> %(q)s::vector LIMIT %(k)s"),
        }
        times = {name: [] for name in layouts}
        found = dict.fromkeys(layouts, 0)
        returned = dict.fromkeys(layouts, 0)
        for q, threshold in zip(queries, exact):
            for name, (iterative, sql) in layouts.items():  # interleaved: each question on every layout in turn
                db.execute(f"SET hnsw.iterative_scan = {iterative}")
                clock = time.perf_counter()
                scores = [row[0] for row in db.execute(sql, {"q": _literal(q), "k": K}).fetchall()]
                times[name].append(1000 * (time.perf_counter() - clock))
                returned[name] += len(scores)
                found[name] += sum(s >= threshold for s in scores)
    figures = {"collection_chunks": size, "shared_chunks": total, "questions": len(queries)}
    for name in layouts:
        figures[f"{name}_recall_at_40"] = round(found[name] / (K * len(queries)), 4)
        figures[f"{name}_returned_per_question"] = round(returned[name] / len(queries), 1)
        figures[f"{name}_p50_ms"] = round(statistics.median(times[name]), 2)
        figures[f"{name}_p95_ms"] = round(float(np.percentile(times[name], 95)), 2)
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:34} {value}")


if __name__ == "__main__":
    main()
