"""A SQuAD v1.1-shaped file made up here, for the tests that need many articles of prose.

A user's clone has no `../shared/eval/squad-dev-v1.1.json`, and the tests must pass there too. The text
is drawn from the bundled seeds' words, so it tokenises, chunks and embeds as English news does; every
paragraph is different, and every answer is a span of its paragraph.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from tests.conftest import SEEDS

PLACES = ["Rotterdam", "Gdansk", "Bergen", "Porto", "Valletta", "Tallinn", "Riga", "Varna", "Constanta", "Split",
          "Cork", "Aarhus", "Bilbao", "Genoa", "Piraeus", "Hamburg", "Antwerp", "Le Havre", "Trieste", "Malmo"]
QUESTION_WORDS = ["What", "Which", "Who", "Where", "When", "How many"]


def _vocabulary() -> list[str]:
    words = re.findall(r"[A-Za-z][a-z]+", " ".join(p.read_text() for p in sorted(SEEDS.glob("*.txt"))))
    return sorted({w.lower() for w in words if len(w) > 2})


def _sentence(rng: random.Random, words: list[str]) -> str:
    picked = [rng.choice(words) for _ in range(rng.randint(9, 22))]
    if rng.random() < 0.6:
        picked.insert(rng.randrange(len(picked)), rng.choice(PLACES))
    if rng.random() < 0.4:
        picked.insert(rng.randrange(len(picked)), f"{rng.randint(2, 4000):,}")
    return " ".join(picked).capitalize() + "."


def sample(*, articles: int = 12, paragraphs: int = 30, seed: int = 7) -> dict:
    """`articles` articles of `paragraphs` paragraphs each, three questions a paragraph."""
    rng = random.Random(seed)
    words = _vocabulary()
    data = []
    for a in range(articles):
        rows = []
        for _ in range(paragraphs):
            sentences = [_sentence(rng, words) for _ in range(rng.randint(4, 8))]
            context = " ".join(sentences)
            qas = []
            for q in range(3):
                sentence = rng.choice(sentences)
                tokens = sentence.rstrip(".").split()
                answer = rng.choice(tokens)
                start = context.index(sentence) + sentence.index(answer)
                asked = " ".join(t for t in tokens if t != answer)[:90].lower()
                qas.append({"id": f"{a}-{len(rows)}-{q}", "question": f"{rng.choice(QUESTION_WORDS)} {asked}?",
                            "answers": [{"text": answer, "answer_start": start}]})
            rows.append({"context": context, "qas": qas})
        data.append({"title": f"{PLACES[a % len(PLACES)]} harbour report {a}", "paragraphs": rows})
    return {"version": "1.1", "data": data}


def write(path: Path, **kwargs) -> Path:
    path.write_text(json.dumps(sample(**kwargs)), encoding="utf-8")
    return path
