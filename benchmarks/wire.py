"""Wire copies found at ingest: MinHash LSH (what citebot uses) against document embeddings, on a constructed set.

usage: python benchmarks/wire.py [--squad ../shared/eval/squad-dev-v1.1.json] [--groups 30] [--json] [-v]

The set is built from SQuAD's Wikipedia paragraphs (three consecutive paragraphs make a story):
- GROUPS wire stories, each carried by 2 to 5 outlets. Every copy but the first is changed the way
  outlets change a wire story: a new headline, a dateline ("BRUSSELS (Reuters) -"), a footer
  ("Reporting by …", a copyright line), the last paragraph cut, the first sentence dropped, a few
  words and figures changed (a correction);
- GROUPS distinct articles on the same subjects: half quote one sentence of a story word for word
  among other paragraphs of its article, half are follow-ups that repeat one paragraph of the story
  as background before two new ones;
- the bundled seeds: two outlets' own reports of one NATO announcement, which must stay apart.

The documents arrive in date order and each joins the story of its most similar earlier document
when that reaches the threshold, as `citebot ingest` does (retrieval/stories.py). Printed for each
method and threshold: the wire groups found whole (every copy in one story, nothing else in it),
the copies that joined their group, and the distinct articles kept apart; then the same for the
real ingest path (`citebot-ingest`: a fresh index, the configured `copies.threshold`, the
documents ingested one by one). Embeddings: the mean of
a document's chunk vectors (the real MiniLM model), cosine similarity, within a 3-day window.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from retrieval import stories  # noqa: E402

OUTLETS = ["Reuters", "AP", "AFP", "Le Monde", "The Guardian", "Deutsche Welle", "NOS", "El País", "ANSA",
           "Yle", "RTÉ", "Politico Europe"]
DATELINES = ["BRUSSELS (Reuters) - ", "LONDON (AP) — ", "PARIS, March 3 (AFP) - ", "BERLIN — "]
FOOTERS = ["Reporting by Maria de Vries; Editing by Tom Hals", "Copyright 2025 The Associated Press. All rights "
           "reserved. This material may not be published, broadcast, rewritten or redistributed.",
           "Read more: our coverage of the region, in depth.", "(Additional reporting by Omar al-Sharif)"]
SWAPS = {"said": "told reporters", "the": "this", "was": "had been", "in": "within", "of": "from"}
KEYS = ("method", "threshold", "groups", "groups_whole", "copies", "copies_joined", "distinct", "distinct_apart")


@dataclass
class Doc:
    key: str
    title: str
    outlet: str
    day: int
    text: str
    group: int | None = None  # the wire group it belongs to; None for a distinct article
    paragraphs: list[str] = field(default_factory=list)


def _edit(text: str, rng: random.Random, share: float = 0.02) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * share))):
        word = words[i]
        if word.isdigit():
            words[i] = str(int(word) + rng.randrange(1, 9))
        else:
            words[i] = SWAPS.get(word, word + "s")
    return " ".join(words)


def _copy(paragraphs: list[str], rng: random.Random) -> list[str]:
    """A wire story as one more outlet runs it: two or three of the usual changes."""
    out = list(paragraphs)
    for change in rng.sample(["dateline", "footer", "cut", "lede", "edit"], rng.choice([2, 3])):
        if change == "dateline":
            out[0] = rng.choice(DATELINES) + out[0]
        elif change == "footer":
            out.append(rng.choice(FOOTERS))
        elif change == "cut" and len(out) > 2:
            out = out[:-1]
        elif change == "lede":
            first, _, rest = out[0].partition(". ")
            out[0] = rest or first
        elif change == "edit":
            out = [_edit(p, rng) for p in out]
    return out


def constructed_set(squad: Path, groups: int = 30, seed: int = 7) -> list[Doc]:
    """GROUPS wire groups, GROUPS distinct related articles and the seeds, in the order they arrive."""
    rng = random.Random(seed)
    articles = [a for a in json.loads(squad.read_text())["data"] if len(a["paragraphs"]) >= 24]
    docs: list[Doc] = []
    for g in range(groups):
        article = articles[g % len(articles)]
        start = 12 * (g // len(articles))
        paragraphs = [p["context"] for p in article["paragraphs"]]
        story = paragraphs[start:start + 3]
        day = 10 * g
        outlets = rng.sample(OUTLETS, 2 + g % 4)
        for n, outlet in enumerate(outlets):
            text = story if n == 0 else _copy(story, rng)
            docs.append(Doc(f"wire-{g}-{n}", f"{article['title']} ({outlet})", outlet, day + rng.randrange(0, 3),
                            "\n\n".join(text), group=g, paragraphs=text))
        if g % 2 == 0:  # same subject, other paragraphs, one sentence of the story quoted word for word
            quote = rng.choice([s for s in " ".join(story).split(". ") if len(s.split()) > 8]) + "."
            text = paragraphs[start + 4:start + 6] + [quote] + paragraphs[start + 6:start + 7]
        else:  # a follow-up: one paragraph of the story as background, then new ones
            text = [story[0]] + paragraphs[start + 8:start + 10]
        docs.append(Doc(f"related-{g}", f"{article['title']}: more", rng.choice(OUTLETS), day + rng.randrange(0, 4),
                        "\n\n".join(text), paragraphs=text))
    for n, path in enumerate(sorted((ROOT / "seeds").glob("*.txt"))):
        docs.append(Doc(f"seed-{n}", path.stem, f"seed outlet {n}", 5, path.read_text()))
    docs.sort(key=lambda d: (d.day, d.key))
    return docs


def group_by_minhash(docs: list[Doc], threshold: float, measure: str = "containment") -> dict[str, int]:
    """Story of each document, each joining its best earlier match found through the LSH bands."""
    story_of: dict[str, int] = {}
    bands: dict[tuple[int, int], list[str]] = defaultdict(list)
    signatures: dict[str, stories.Signature] = {}
    for doc in docs:
        sig = stories.signature(doc.text)
        found = {key for band in sig.bands() for key in bands[band]}
        numbered = {i: signatures[k] for i, k in enumerate(sorted(found))}
        best = stories.best_match(sig, numbered, threshold, measure=measure)
        story_of[doc.key] = story_of[sorted(found)[best]] if best is not None else len(story_of)
        signatures[doc.key] = sig
        for band in sig.bands():
            bands[band].append(doc.key)
    return story_of


def group_by_citebot(docs: list[Doc], folder: Path) -> dict[str, int]:
    """Story of each document as `citebot ingest` groups them: the real store, in a fresh index.

    The vectors come from the tests' hashing embedder: grouping reads only the texts.
    """
    import datetime as dt

    from retrieval.models import Article
    from retrieval.pipeline import Answerer
    from retrieval.settings import load_settings
    from tests.fakes import FakeEmbedder

    settings = load_settings(index={"dir": str(folder)}, embedding={"model": "fake"}, chunking={"max_tokens": 60})
    answerer = Answerer(settings, FakeEmbedder())
    start = dt.date(2025, 1, 1)
    for doc in docs:  # one at a time, in the order they arrive
        answerer.ingest_articles([Article(key=doc.key, title=doc.title, outlet=doc.outlet, text=doc.text,
                                          published=start + dt.timedelta(days=doc.day))])
    db = answerer.store.sqlite._db  # the embedded engine's story rows, as check.py reads them
    rows = dict(db.execute("SELECT d.key, s.story FROM stories s JOIN documents d ON d.id = s.document"))
    answerer.store.close()
    return rows


def document_vectors(docs: list[Doc]) -> dict[str, np.ndarray]:
    from retrieval.chunk import chunk_text
    from retrieval.embed import SentenceTransformerEmbedder
    from retrieval.settings import load_settings

    settings = load_settings()
    embedder = SentenceTransformerEmbedder(settings.embedding)
    vectors = {}
    for doc in docs:
        chunks = chunk_text(doc.key, doc.text, count_tokens=embedder.count_tokens,
                            max_tokens=settings.chunking.max_tokens, max_chars=settings.chunking.max_chars)
        mean = embedder.embed_documents([c.text for c in chunks]).mean(axis=0)
        vectors[doc.key] = mean / np.linalg.norm(mean)
    return vectors


def group_by_embedding(docs: list[Doc], vectors: dict[str, np.ndarray], threshold: float,
                       window: int = 3) -> dict[str, int]:
    story_of: dict[str, int] = {}
    for i, doc in enumerate(docs):
        earlier = [d for d in docs[:i] if doc.day - d.day <= window]
        scores = [(float(vectors[doc.key] @ vectors[d.key]), d.key) for d in earlier]
        best = max(scores, default=None)
        story_of[doc.key] = story_of[best[1]] if best and best[0] >= threshold else len(story_of)
    return story_of


def score(docs: list[Doc], story_of: dict[str, int]) -> dict:
    members = defaultdict(set)
    for key, story in story_of.items():
        members[story].add(key)
    by_group = defaultdict(list)
    for doc in docs:
        if doc.group is not None:
            by_group[doc.group].append(doc.key)
    whole = sum(1 for keys in by_group.values() if members[story_of[keys[0]]] == set(keys))
    copies = sum(len(keys) - 1 for keys in by_group.values())
    joined = sum(1 for keys in by_group.values() for k in keys[1:] if story_of[k] == story_of[keys[0]])
    distinct = [d.key for d in docs if d.group is None]
    apart = sum(1 for k in distinct if members[story_of[k]] == {k})
    return {"groups": len(by_group), "groups_whole": whole, "copies": copies, "copies_joined": joined,
            "distinct": len(distinct), "distinct_apart": apart}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--squad", type=Path, default=ROOT.parent / "shared" / "eval" / "squad-dev-v1.1.json")
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--seed", type=int, default=7, help="another seed builds another set of copies")
    parser.add_argument("--no-embeddings", action="store_true", help="measure MinHash only (no model)")
    parser.add_argument("--json", action="store_true", help="one JSON line per method and threshold")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    docs = constructed_set(args.squad, args.groups, args.seed)
    rows = [{"method": f"minhash-{measure}", "threshold": t, **score(docs, group_by_minhash(docs, t, measure))}
            for measure in ("jaccard", "containment") for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)]
    with tempfile.TemporaryDirectory() as folder:
        from retrieval.settings import load_settings

        rows.append({"method": "citebot-ingest", "threshold": load_settings().copies.threshold,
                     **score(docs, group_by_citebot(docs, Path(folder)))})
    if not args.no_embeddings:
        vectors = document_vectors(docs)
        rows += [{"method": "embedding", "threshold": t, **score(docs, group_by_embedding(docs, vectors, t))}
                 for t in (0.8, 0.85, 0.9, 0.95, 0.98)]
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['method']:19} ≥{row['threshold']:<5} groups whole {row['groups_whole']}/{row['groups']}"
                  f"  copies joined {row['copies_joined']}/{row['copies']}"
                  f"  distinct kept apart {row['distinct_apart']}/{row['distinct']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
