import datetime as dt
import re

from retrieval.answer import ScoredHit, build_answer, near_duplicate
from retrieval.models import Hit, Source
from retrieval.spans import Phrase

QUOTE = "I expect leaders will agree to strengthen NATO's posture in all domains, said Stoltenberg."


MARCH_23 = dt.date(2022, 3, 23)


def hit(doc, text, score, start=0, outlet=None, published=MARCH_23):
    source = Source(doc_id=doc, outlet=outlet, published=published, lead=text[:20])
    return Hit(chunk_id=f"{doc}-{start}", doc_id=doc, start=start, end=start + len(text), text=text,
               score=score, source=source)


def scored(h, score, sentence=None):
    return ScoredHit(hit=h, sentence=sentence or (0, len(h.text)), sentence_score=score)


def test_best_sentence_is_the_answer_with_offsets_into_the_article():
    h = hit("a", "Intro sentence. Four battle groups in Hungary.", 0.9, start=100)
    answer = build_answer("where?", [scored(h, 0.8, (16, 46))], k=3, min_score=0.3)
    assert answer.found
    assert answer.answer.text == "Four battle groups in Hungary."
    assert (answer.answer.doc_start, answer.answer.doc_end) == (116, 146)
    assert answer.passages[0].highlight == answer.answer


def test_below_threshold_is_not_found():
    answer = build_answer("sourdough?", [scored(hit("a", "NATO text.", 0.9), 0.1)], k=3, min_score=0.3)
    assert not answer.found
    assert answer.passages == []
    assert "Not found" in answer.message


def test_same_quote_in_two_outlets_is_one_passage_with_both_sources():
    a = hit("a", QUOTE, 0.9, outlet="Newsmax")
    b = hit("b", "“" + QUOTE + "”", 0.8, outlet="Other")
    c = hit("c", "Something else entirely about ships at sea.", 0.7)
    answer = build_answer("q", [scored(a, 0.9), scored(b, 0.8), scored(c, 0.5)], k=5, min_score=0.3)
    assert [len(p.sources) for p in answer.passages] == [2, 1]
    assert [s.outlet for s in answer.passages[0].sources] == ["Newsmax", "Other"]
    assert answer.passages[1].n == 2


def test_overlapping_chunks_of_one_article_are_cited_once_and_k_limits():
    a1 = hit("a", "one two three four five six", 0.9, start=0)
    a2 = hit("a", "five six seven eight nine ten", 0.8, start=20)
    others = [hit(d, f"different text number {d} here now", 0.5) for d in "xyz"]
    answer = build_answer("q", [scored(a1, 0.9), scored(a2, 0.8), *[scored(o, 0.5) for o in others]], k=2,
                          min_score=0.0)
    assert len(answer.passages) == 2
    assert answer.passages[0].chunk_ids == ["a-0"]


def test_near_duplicate():
    assert near_duplicate(QUOTE, "He said: " + QUOTE, 0.8)
    assert not near_duplicate(QUOTE, "Russia must understand that a nuclear war should never be fought.", 0.8)


# -- phrases, sources that differ, dates ---------------------------------------------------------

SEVEN = "Hungary, Slovakia, Romania, Latvia, Estonia, Lithuania and Bulgaria"
FOUR = "Bulgaria, Hungary, Romania, and Slovakia"
SAME_FOUR = "Hungary, Slovakia, Romania and Bulgaria"
WHERE = "where are the new battlegroups?"


class KnownPhrases:
    """A PhraseFinder that finds the first of some given lists in a sentence; its values are the list's items."""

    def __init__(self, *phrases, coverage=1.0):
        self.phrases = phrases
        self.coverage = coverage
        self.asked: list[tuple[str, str]] = []

    def find(self, question, sentence):
        self.asked.append((question, sentence))
        for text in self.phrases:
            at = sentence.find(text)
            if at >= 0:
                values = tuple(v for v in re.split(r",\s*(?:and\s+)?|\s+and\s+", text) if v)
                return Phrase(at, at + len(text), values, self.coverage)
        return None


PHRASES = KnownPhrases(SEVEN, FOUR, SAME_FOUR, "Poland")


def groups_in(places, doc, outlet, published, score=0.8, start=0):
    text = f"Four new battle groups are being set up in {places}, he said."
    return scored(hit(doc, text, score, start=start, outlet=outlet, published=published), score)


def test_the_phrase_asked_for_lies_inside_the_answer_sentence_with_offsets_into_the_article():
    text = "Intro sentence. Four battle groups in " + SAME_FOUR + "."
    h = hit("a", text, 0.9, start=100)
    answer = build_answer(WHERE, [scored(h, 0.8, (16, len(text)))], k=3, min_score=0.3, phrases=PHRASES)
    phrase = answer.phrase
    assert phrase.text == SAME_FOUR
    assert answer.passages[0].text[phrase.start : phrase.end] == SAME_FOUR
    assert (phrase.doc_start, phrase.doc_end) == (100 + text.index(SAME_FOUR), 100 + len(text) - 1)
    assert answer.answer.start <= phrase.start < phrase.end <= answer.answer.end
    assert PHRASES.asked[-1] == (WHERE, text[16:])  # the finder is asked about the answer sentence only


def test_without_a_phrase_the_sentence_stays_the_answer():
    answer = build_answer(WHERE, [groups_in(SEVEN, "a", "Newsmax", None)], k=3, min_score=0.3)
    assert answer.phrase is None and answer.answer.text.startswith("Four new battle groups")
    assert (answer.disagreement, answer.versions) == (False, [])


def test_articles_naming_different_places_differ_and_each_version_names_its_outlet_and_date():
    answer = build_answer(
        WHERE,
        [groups_in(SEVEN, "a", "Newsmax", None, 0.64), groups_in(FOUR, "b", "The Daily", MARCH_23, 0.59)],
        k=5, min_score=0.3, phrases=PHRASES,
    )
    assert answer.disagreement is True
    latest, other = answer.versions  # the dated report first, and it is the latest
    assert (latest.text, latest.passage, latest.values) == (FOUR, 2, ["Bulgaria", "Hungary", "Romania", "Slovakia"])
    assert [(s.outlet, s.published) for s in latest.sources] == [("The Daily", MARCH_23)]
    assert (other.text, other.passage, other.values) == (SEVEN, 1, SEVEN.replace(" and", ",").split(", "))
    assert [(s.outlet, s.published) for s in other.sources] == [("Newsmax", None)]
    assert (latest.newest, other.newest) == (False, False)  # beside an undated report, none is the latest
    assert answer.as_of is None  # the answer is quoted from Newsmax, which gives no date


def test_the_same_places_in_another_order_agree():
    answer = build_answer(
        WHERE, [groups_in(FOUR, "a", "Newsmax", None), groups_in(SAME_FOUR, "b", "The Daily", MARCH_23)],
        k=5, min_score=0.3, phrases=PHRASES,
    )
    assert answer.found and len(answer.passages) == 2
    assert answer.disagreement is False
    assert answer.versions == []


def test_one_article_saying_two_things_is_not_sources_differing():
    a1 = groups_in(SEVEN, "a", "Newsmax", None, 0.8, start=0)
    a2 = groups_in("Poland", "a", "Newsmax", None, 0.75, start=500)
    answer = build_answer(WHERE, [a1, a2], k=5, min_score=0.3, phrases=PHRASES)
    assert len(answer.passages) == 2
    assert answer.disagreement is False and answer.versions == []


def test_only_passages_that_pass_the_threshold_and_answer_the_question_are_compared():
    best = groups_in(SEVEN, "a", "Newsmax", None, 0.8)
    weak = groups_in(FOUR, "b", "The Daily", MARCH_23, 0.2)
    assert not build_answer(WHERE, [best, weak], k=5, min_score=0.3, phrases=PHRASES).disagreement
    # cited, but far below the best sentence: about something else
    cited = build_answer(WHERE, [best, weak], k=5, min_score=0.1, phrases=PHRASES)
    assert len(cited.passages) == 2 and not cited.disagreement
    # close in score, but the sentence has too few of the question's words
    off_topic = KnownPhrases(SEVEN, FOUR, coverage=0.5)
    close = groups_in(FOUR, "b", "The Daily", MARCH_23, 0.78)
    assert not build_answer(WHERE, [best, close], k=5, min_score=0.3, phrases=off_topic).disagreement
    assert build_answer(WHERE, [best, close], k=5, min_score=0.3, phrases=PHRASES).disagreement


def test_a_wire_copy_with_another_list_is_one_passage_but_two_versions():
    tail = (" The forces will remain in place as long as necessary, the secretary-general told reporters in"
            " Brussels ahead of the summit, where leaders are expected to agree to strengthen the alliance's"
            " posture in all domains, with major increases in the eastern part of the alliance.")
    a = hit("a", f"Battle groups will be set up in {SEVEN}." + tail, 0.9, outlet="Newsmax", published=None)
    b = hit("b", f"Battle groups will be set up in {FOUR}." + tail, 0.8, outlet="AP", published=MARCH_23)
    answer = build_answer(WHERE, [scored(a, 0.8, (0, a.text.index(tail))), scored(b, 0.79, (0, b.text.index(tail)))],
                          k=5, min_score=0.3, phrases=PHRASES)
    assert len(answer.passages) == 1
    assert answer.disagreement
    assert [(v.passage, v.sources[0].outlet) for v in answer.versions] == [(1, "AP"), (1, "Newsmax")]


def test_sources_of_a_passage_are_newest_first_and_the_answer_is_as_of_the_newest():
    older = hit("a", QUOTE, 0.9, start=10, outlet="Old", published=dt.date(2022, 3, 20))
    undated = hit("b", "He said: " + QUOTE, 0.85, start=20, outlet="Undated", published=None)
    newer = hit("c", "“" + QUOTE + "”", 0.8, start=30, outlet="New", published=MARCH_23)
    other = hit("d", "Something else entirely about ships at sea.", 0.7, outlet="Ships", published=dt.date(2022, 3, 1))
    answer = build_answer("q", [scored(older, 0.9), scored(undated, 0.85), scored(newer, 0.8), scored(other, 0.5)],
                          k=5, min_score=0.3)
    first = answer.passages[0]
    assert [s.outlet for s in first.sources] == ["New", "Old", "Undated"]
    assert first.chunk_ids == ["c-30", "a-10", "b-20"]
    # the passage quotes its first (newest) source, so its offsets point into that article
    assert first.text == newer.text and first.doc_start == 30 and answer.answer.doc_start == 30
    assert first.score == 0.9  # still ranked by its best sentence
    assert answer.as_of == MARCH_23


def test_as_of_is_unknown_without_dates():
    answer = build_answer("q", [scored(hit("a", QUOTE, 0.9, published=None), 0.9)], k=5, min_score=0.3)
    assert answer.as_of is None


def test_outlets_that_agree_share_one_version_newest_first():
    def says(places, doc, outlet, published, score, opening):
        text = f"{opening} {places}, officials said on the record."
        return scored(hit(doc, text, score, outlet=outlet, published=published), score)

    answer = build_answer(
        WHERE,
        [
            says(SEVEN, "a", "Newsmax", None, 0.8, "Four new battle groups are being set up in"),
            says(FOUR, "b", "The Daily", dt.date(2022, 3, 20), 0.78, "The alliance will station fresh troops in"),
            says(SAME_FOUR, "c", "AP", MARCH_23, 0.77, "Leaders agreed on multinational forces for"),
        ],
        k=5, min_score=0.3, phrases=PHRASES,
    )
    assert len(answer.passages) == 3 and answer.disagreement
    assert [(v.passage, [s.outlet for s in v.sources]) for v in answer.versions] == [
        (2, ["AP", "The Daily"]), (1, ["Newsmax"]),
    ]


def test_as_of_is_the_date_of_the_report_the_answer_comes_from_and_the_latest_report_is_named():
    """The Rotterdam case: the best passage is the older report; the newer one says another number."""
    def says(text, doc, published, score):
        return scored(hit(doc, text, score, outlet="Herald", published=published), score)

    older, newer = dt.date(2025, 3, 3), dt.date(2025, 3, 4)
    first = "About 2300 dock workers joined the Rotterdam strike on Monday, the union said."
    second = "Police counted 1900 strikers at the Rotterdam port gates by Tuesday evening."
    numbers = KnownPhrases("2300", "1900")
    question = "how many workers joined the Rotterdam strike?"
    answer = build_answer(question, [says(first, "a", older, 0.8), says(second, "b", newer, 0.78)], k=5,
                          min_score=0.3, phrases=numbers)
    assert "2300" in answer.passages[0].text and len(answer.passages) == 2
    assert answer.as_of == older  # not the newest date among the cited
    assert answer.disagreement
    assert [(v.values, v.newest, v.sources[0].published) for v in answer.versions] == [
        (["1900"], True, newer), (["2300"], False, older)]
    same_day = build_answer(question, [says(first, "a", newer, 0.8), says(second, "b", newer, 0.78)], k=5,
                            min_score=0.3, phrases=numbers)
    assert not any(v.newest for v in same_day.versions)  # neither is the later report
