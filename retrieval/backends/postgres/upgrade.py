"""`citebot migrate` on PostgreSQL: every collection in the database brought to this citebot's schema, in place.

Schema 1 kept a row per posting (term, chunk, tf, tokens); schema 2 packs them per term and segment
(postgres/postings.py). The upgrade is SQL only, one transaction per collection under the writers' lock:
the whole old table becomes one segment, packed in the database as `int8send` writes them.
"""

from __future__ import annotations

import logging


from retrieval.backends.postgres.engine import LOCK_KEY, connect, schema_name, stored_collections
from retrieval.backends.postgres.schema import SCHEMA_VERSION, TABLES, shown
from retrieval.errors import CitebotError, IndexSchemaError

log = logging.getLogger(__name__)

TO_2 = """
ALTER TABLE chunks ADD COLUMN segment bigint NOT NULL DEFAULT 1;
ALTER TABLE chunks ALTER COLUMN segment DROP DEFAULT;
ALTER TABLE postings RENAME TO postings_v1;
ALTER INDEX postings_pkey RENAME TO postings_v1_pkey;
ALTER INDEX IF EXISTS postings_chunk RENAME TO postings_v1_chunk;
"""
PACK_2 = """
INSERT INTO postings (term, segment, chunks, tfs, lengths)
SELECT p.term, 1, string_agg(int8send(p.chunk), ''::bytea ORDER BY p.chunk),
       string_agg(substring(int4send(least(p.tf, 65535)) FROM 3 FOR 2), ''::bytea ORDER BY p.chunk),
       string_agg(int4send(c.tokens), ''::bytea ORDER BY p.chunk)
FROM postings_v1 p JOIN chunks c ON c.id = p.chunk GROUP BY p.term
"""


def upgrade(url: str) -> list[tuple[str, int]]:
    """(collection, the schema it had) for each collection in the database; those behind are upgraded."""
    db = connect(url)
    done = []
    with db:
        for collection in sorted(stored_collections(url) | {"default"}):
            schema = schema_name(collection)
            if not db.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".citebot_meta',)).fetchone()[0]:
                continue
            db.execute(f'SET search_path = "{schema}", public')
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                row = db.execute("SELECT value FROM citebot_meta WHERE key = 'schema'").fetchone()
                version = int(row[0]) if row else SCHEMA_VERSION
                if version > SCHEMA_VERSION:
                    raise IndexSchemaError(f"{shown(url)} (schema {schema})", version, SCHEMA_VERSION)
                if version == 1:
                    log.info("upgrading %s in %s to schema 2 (packed postings)", schema, shown(url))
                    db.execute(TO_2)
                    db.execute(TABLES)
                    if db.execute("SELECT count(*) FROM chunks").fetchone()[0]:
                        db.execute("INSERT INTO segments (id, chunks) SELECT 1, count(*) FROM chunks")
                        db.execute("SELECT setval('segments_id_seq', 1)")
                    db.execute(PACK_2)
                    db.execute("DROP TABLE postings_v1")
                    db.execute("UPDATE citebot_meta SET value = %s WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                elif version != SCHEMA_VERSION:
                    raise CitebotError(f"{shown(url)} (schema {schema}) holds index schema {version}, which this "
                                       "citebot cannot upgrade: rebuild it with `citebot ingest --rebuild PATH…`")
            done.append((collection, version))
    return done
