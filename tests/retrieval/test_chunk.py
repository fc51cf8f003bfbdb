import pytest

from retrieval.chunk import chunk_text, split_sentences


def words(text: str) -> int:
    return len(text.split())


TEXT = (
    "NATO will bolster its ranks. Four new battle groups are being set up in Hungary and Slovakia.\n\n"
    "The forces will remain in place. Dr. Smith said the U.S. agrees with that plan. It is a long-term move."
)


def test_sentences_are_exact_spans_and_paragraphs_end_them():
    spans = split_sentences(TEXT)
    sentences = [TEXT[s:e] for s, e in spans]
    assert sentences[0] == "NATO will bolster its ranks."
    assert sentences[1].endswith("Hungary and Slovakia.")
    assert sentences[2] == "The forces will remain in place."
    # abbreviations do not end a sentence
    assert "Dr. Smith said the U.S. agrees with that plan." in sentences
    assert all(not TEXT[s].isspace() and not TEXT[e - 1].isspace() for s, e in spans)


def test_chunks_fit_the_limit_keep_offsets_and_overlap():
    chunks = chunk_text("d", TEXT, count_tokens=words, max_tokens=25, overlap=1)
    assert len(chunks) > 1
    for chunk in chunks:
        assert words(chunk.text) <= 25
        assert TEXT[chunk.start : chunk.end] == chunk.text
    # each chunk after the first starts with the last sentence of the one before
    for before, after in zip(chunks, chunks[1:]):
        assert after.start < before.end
    # every sentence is in some chunk
    for s, e in split_sentences(TEXT):
        assert any(c.start <= s and e <= c.end for c in chunks)


def test_overlong_sentence_is_cut_between_words_not_truncated():
    text = "word " * 50 + "end."
    chunks = chunk_text("d", text, count_tokens=words, max_tokens=8, overlap=0)
    assert all(words(c.text) <= 8 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()


def test_single_word_over_the_limit_is_an_error():
    with pytest.raises(ValueError, match="raise chunking.max_tokens"):
        chunk_text("d", "supercalifragilistic", count_tokens=lambda t: 99, max_tokens=5)


def test_empty_text_has_no_chunks():
    assert chunk_text("d", "  \n\n ", count_tokens=words, max_tokens=10) == []
