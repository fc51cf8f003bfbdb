"""Dump what scoring needs for every SQuAD dev question, once, so rankers can be trained offline.

usage: python benchmarks/dump_candidates.py SQUAD_FILE [--out FILE.pkl] [--candidates N]
Indexes the file through the normal ingest path and, per question, keeps the fused candidates
(ids, RRF, dense and BM25 scores, whether the chunk covers a gold answer where SQuAD places it),
plus every candidate chunk's text, sentence spans, sentence and word-piece vectors, and the question's.
benchmarks/train_ranker.py reads the file.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def dump(path: Path, out: Path, candidates: int) -> None:
    from retrieval.evaluate import _covers, _scratch_index, load_squad, questions_for
    from rich.console import Console

    from retrieval.settings import load_settings

    articles = load_squad(path)
    with tempfile.TemporaryDirectory() as tmp, \
            _scratch_index(load_settings(), articles, Path(tmp), Console(stderr=True), False) as (answerer, texts):
        questions, _ = questions_for(articles, texts)
        key_of = {row.doc_id: row.key for row in answerer.sources()}
        ids, all_texts = answerer.store.sqlite.all_chunk_texts()
        records, chunks = [], {}
        vectors, question_tokens = answerer.reader.embedder.embed_with_tokens([q.text for q in questions])
        for qi, (question, vector) in enumerate(zip(questions, vectors)):
            ranked = answerer.retrieve(question.text, vector=vector)[:candidates]
            stored = answerer.store.chunks(r.id for r in ranked)
            missing = [r.id for r in ranked if r.dense is None]
            dense_of = {i: float(v @ vector) for i, v in answerer.store.vectors(missing).items()}
            rows = []
            for r in ranked:
                chunk = stored[r.id]
                if r.id not in chunks:
                    # The sentences and their vectors as stored at ingest; word pieces as the reader computes them.
                    texts = [chunk.text[s:e] for s, e in chunk.sentences]
                    # Each sentence embedded on its own too, for train_ranker.py --sentence-vectors separate.
                    separate, tokens = answerer.reader.embedder.embed_with_tokens(texts)
                    chunks[r.id] = {"text": chunk.text, "spans": chunk.sentences,
                                    "vectors": chunk.sentence_vectors,
                                    "separate_vectors": separate.astype(np.float16),
                                    "tokens": tokens,
                                    "doc": key_of.get(chunk.source.doc_id)}
                hit = type("H", (), {"doc_id": chunk.source.doc_id, "start": chunk.start, "end": chunk.end})
                rows.append((r.id, r.score, r.dense if r.dense is not None else dense_of[r.id],
                             r.lexical or 0.0, bool(_covers(hit, key_of, question))))
            records.append({"question": question.text, "answers": question.answers, "key": question.key,
                            "candidates": rows})
            if qi % 500 == 0:
                print(f"{qi}/{len(questions)}", file=sys.stderr)
        data = {"records": records, "chunks": chunks, "question_vectors": vectors.astype(np.float32),
                "question_tokens": question_tokens,
                "corpus_texts": all_texts}
    with out.open("wb") as handle:
        pickle.dump(data, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/citebot-candidates.pkl"))
    parser.add_argument("--candidates", type=int, default=40)
    args = parser.parse_args()
    dump(args.file, args.out, args.candidates)


if __name__ == "__main__":
    main()
