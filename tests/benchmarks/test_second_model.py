"""benchmarks/second_model.py: the held-out second stage re-orders only the top sentences."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from second_model import _spread, second_stage  # noqa: E402


def _questions(n: int, rows: int = 4):
    question_of = np.repeat(np.arange(n), rows)
    article_of = np.array([f"a{q % 4}" for q in question_of])
    # The first stage ranks row 0 first; the answer is in row 1 (second) of every question.
    base = np.tile(np.array([2.0, 1.9, 1.0, 0.0]), n)
    label = np.tile(np.array([False, True, False, False]), n)
    return base, label, question_of, article_of


def test_a_telling_second_opinion_fixes_the_choice():
    base, label, question_of, article_of = _questions(40)
    extra = np.tile(np.array([0.1, 0.9, 0.2, 0.3]), 40)
    assert second_stage(base, extra, label, question_of, article_of, top=3) == 1.0


def test_it_cannot_reach_beyond_the_top():
    base, label, question_of, article_of = _questions(40)
    extra = np.tile(np.array([0.1, 0.9, 0.2, 0.3]), 40)
    assert second_stage(base, extra, label, question_of, article_of, top=1) == 0.0


def test_an_uninformative_second_opinion_changes_nothing():
    base, label, question_of, article_of = _questions(40)
    extra = np.tile(np.array([0.5, 0.1, 0.5, 0.5]), 40)
    assert second_stage(base, extra, label, question_of, article_of, top=3) == 0.0


def test_spread_repeats_each_groups_best():
    values = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    groups = np.array([0, 0, 0, 1, 1])
    assert _spread(values, groups, np.maximum).tolist() == [3.0, 3.0, 3.0, 5.0, 5.0]
