"""The sentence features that the rescoring weighs."""

import numpy as np
import pytest

from retrieval.features import (
    FEATURES,
    Vocabulary,
    chunk_features,
    chunk_profiles,
    expected_kind,
    question_profile,
    stem,
)
from retrieval.settings import load_settings

CHUNK = [
    "The Bank of America Tower is the tallest building in the city.",
    "It has a height of 617 ft and 42 floors.",
    "Sourdough bread needs a lively starter.",
]


def features_of(question: str, sentences=CHUNK, corpus=None) -> dict[str, np.ndarray]:
    vocabulary = Vocabulary.from_texts(corpus or [" ".join(sentences), "Bread and cake.", "A tower of cards."])
    profiles, stems = chunk_profiles(sentences)
    cosines = np.array([0.6, 0.3, 0.1][: len(sentences)])
    matrix = chunk_features(question_profile(question, vocabulary), profiles, stems, cosines, 0.5, 1.0, 1.0)
    assert matrix.shape == (len(sentences), len(FEATURES))
    return {name: matrix[:, i] for i, name in enumerate(FEATURES)}


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many floors does the tower have?", "number"),
        ("What percentage of voters agreed?", "number"),
        ("When was the tower built?", "date"),
        ("In which year did the war end?", "date"),
        ("Who designed the tower?", "person"),
        ("Where are the new battlegroups?", "place"),
        ("Which country hosts the summit?", "place"),
        ("What is the tower made of?", "other"),
    ],
)
def test_the_kind_of_answer_comes_from_the_question_form(question, kind):
    assert expected_kind(question) == kind


def test_stems_meet_across_word_forms():
    assert stem("founded") == stem("founds") == "found"
    assert stem("cities") == "city"
    assert stem("is") == "is"  # too short to strip


def test_a_number_counts_for_how_many_only_when_the_question_does_not_give_it():
    f = features_of("How many floors does the tower have?")
    assert list(f["number_for_number"]) == [0.0, 1.0, 0.0]
    given = features_of("Does the tower have 617 ft and 42 floors, how many?")
    assert given["number_for_number"][1] == 0.0


def test_a_pronoun_sentence_borrows_the_match_of_the_sentence_before():
    f = features_of("How tall is the Bank of America Tower?")
    assert f["idf_overlap"][0] > f["idf_overlap"][1]
    assert f["previous_idf_overlap"][1] > 0
    assert f["pronoun_after_match"][1] == pytest.approx(f["previous_idf_overlap"][1])
    assert f["pronoun_after_match"][0] == 0.0  # "The ..." does not refer back


def test_rare_question_words_weigh_more_than_common_ones():
    corpus = ["the tower of the city"] * 5 + ["a sourdough starter"]
    f = features_of("sourdough tower", corpus=corpus)
    # both sentences 1 and 3 share one word; the rarer one counts for more
    assert f["overlap"][0] == f["overlap"][2] == 0.5
    assert f["idf_overlap"][2] > f["idf_overlap"][0]


def test_chunk_wide_features_are_the_same_for_every_sentence():
    f = features_of("How tall is the tower?")
    for name in ("chunk_best_cosine", "dense", "bm25", "rrf", "chunk_idf_overlap"):
        assert len(set(f[name])) == 1, name
    assert list(f["cosine_below_best"]) == pytest.approx([0.0, -0.3, -0.5])


def test_the_shipped_settings_weigh_every_feature():
    weights = load_settings().reranker.weights
    assert set(weights) == set(FEATURES)
    assert weights["cosine"] > 0 and weights["idf_overlap"] > 0


def test_token_match_takes_each_question_piece_to_its_closest_sentence_piece():
    eye = np.eye(4, dtype=np.float16)
    question = eye[[0, 1]]  # two pieces
    sentences = [eye[[0, 2]], eye[[0, 1, 3]], np.zeros((0, 4), dtype=np.float16)]
    vocabulary = Vocabulary.from_texts(["a b c"])
    profiles, stems = chunk_profiles(["one", "two", "three"])
    matrix = chunk_features(question_profile("a b", vocabulary), profiles, stems, np.zeros(3), 0.0, 0.0, 0.0,
                            question, sentences)
    match = matrix[:, FEATURES.index("token_match")]
    strong = matrix[:, FEATURES.index("token_match_strong")]
    assert list(match) == pytest.approx([0.5, 1.0, 0.0])
    assert list(strong) == pytest.approx([0.5, 1.0, 0.0])
    without = chunk_features(question_profile("a b", vocabulary), profiles, stems, np.zeros(3), 0.0, 0.0, 0.0)
    assert not without[:, FEATURES.index("token_match")].any()
    assert not without[:, FEATURES.index("alone_cosine")].any()


def test_the_cosine_of_each_sentence_alone_has_its_own_column():
    vocabulary = Vocabulary.from_texts(["a b c"])
    profiles, stems = chunk_profiles(["one", "two"])
    matrix = chunk_features(question_profile("a b", vocabulary), profiles, stems, np.array([0.9, 0.1]), 0.0, 0.0,
                            0.0, alone=np.array([0.3, 0.7]))
    assert list(matrix[:, FEATURES.index("alone_cosine")]) == pytest.approx([0.3, 0.7])
    assert list(matrix[:, FEATURES.index("cosine")]) == pytest.approx([0.9, 0.1])
