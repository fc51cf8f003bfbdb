"""benchmarks/train_ranker.py: where the held-out choice of sentence goes wrong."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from train_ranker import errors  # noqa: E402

TEXT = "The tower opened in 1990. It is 617 ft tall. Its lobby is marble."
SPANS = [(0, 25), (26, 44), (45, 66)]


def _data(questions: int) -> dict:
    chunk = {"text": TEXT, "spans": SPANS}
    other = {"text": "It is 617 ft tall.", "spans": [(0, 18)]}
    candidates = [(1, 0, 0, 0, True), (2, 0, 0, 0, True)]
    return {"chunks": {1: chunk, 2: other}, "records": [{"candidates": candidates}] * questions}


def test_each_wrong_choice_is_placed():
    data = _data(3)
    question_of = np.repeat(np.arange(3), 4)  # 3 sentences of chunk 1, then chunk 2's one
    label = np.tile(np.array([False, True, False, True]), 3)
    scores = np.array([
        5.0, 4.0, 1.0, 0.0,  # the gold next to the chosen sentence, and the runner-up
        5.0, 0.0, 4.0, 1.0,  # the gold (chunk 2's copy scores best of the golds) is the neighbour in chunk 1
        0.0, 5.0, 1.0, 2.0,  # right
    ])
    counts = errors(data, scores, question_of, label, 40)
    assert counts["right"] == 1
    assert counts["wrong: the gold is the next or previous sentence"] == 2
    assert counts["wrong: the gold is the runner-up"] == 1
    assert counts["wrong: in another chunk"] == 0


def test_a_question_without_a_gold_sentence_is_counted_apart():
    data = _data(1)
    counts = errors(data, np.array([1.0, 2.0, 3.0, 0.0]), np.zeros(4, dtype=int), np.zeros(4, dtype=bool), 40)
    assert counts["no gold sentence among the candidates"] == 1
    assert counts["right"] == 0
