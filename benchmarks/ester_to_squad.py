"""ESTER's news-wire questions as a SQuAD v1.1 file, so that `citebot eval squad` measures retrieval on news.

usage: python benchmarks/ester_to_squad.py ESTER_DATA_FOLDER OUT.json

ESTER (PlusLabNLP/ESTER on GitHub, `data/`; its repository states no licence, so none of it is copied into
citebot) holds crowd questions about events in short news-wire passages, with answer spans. The dev file
(301 questions over 108 passages) and the 500 "original" training questions (407 passages) have answers; the
test file's passages (287) have none and are indexed as distractors, so the index holds all 802 passages and
the 801 answerable questions are asked of it. Each passage becomes one SQuAD "article" with one paragraph.

Then, for citebot as configured and for plain BM25 over the same chunks:

    citebot eval squad OUT.json --json
    CITEBOT_SEARCH__MODE=bm25 CITEBOT_RERANKER__ENABLED=false citebot eval squad OUT.json --json

A development check only (docs/figures.md says which figures come from it): it is easy for BM25, the
questions reuse the passages' words, and its passages carry no dates.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

FILES = {"dev": "final_dev_ans_gen.json", "train": "final_train_ans_gen_500original.json",
         "test": "final_test_ans_gen.json"}


def convert(folder: Path) -> dict:
    passages: dict[str, dict] = {}  # context -> SQuAD article
    for split, name in FILES.items():
        for n, item in enumerate(json.loads((folder / name).read_text(encoding="utf-8"))):
            context = item["context"]
            article = passages.setdefault(context, {"title": f"Passage {len(passages) + 1}",
                                                    "paragraphs": [{"context": context, "qas": []}]})
            answers = []
            for text, where in zip(item.get("answer_texts") or [], item.get("answer_indices") or [], strict=False):
                start, end = (int(x) for x in re.findall(r"\d+", where)[:2])
                if context[start:end] == text:
                    answers.append({"text": text, "answer_start": start})
            if answers:
                article["paragraphs"][0]["qas"].append({"id": f"ester-{split}-{n}", "question": item["question"],
                                                        "answers": answers})
    return {"version": "ester-as-squad", "data": list(passages.values())}


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        raise SystemExit(__doc__.splitlines()[2].strip())
    data = convert(Path(args[0]))
    Path(args[1]).write_text(json.dumps(data), encoding="utf-8")
    questions = sum(len(a["paragraphs"][0]["qas"]) for a in data["data"])
    print(json.dumps({"passages": len(data["data"]), "questions": questions}))


if __name__ == "__main__":
    main()
