import datetime as dt

from retrieval.answer import ScoredHit, build_answer, near_duplicate
from retrieval.models import Hit, Source

QUOTE = "I expect leaders will agree to strengthen NATO's posture in all domains, said Stoltenberg."


def hit(doc, text, score, start=0, outlet=None):
    source = Source(doc_id=doc, outlet=outlet, published=dt.date(2022, 3, 23), lead=text[:20])
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
