"""The storage seams: every implementation has every method its interface declares, with the same parameters,
and nothing outside retrieval/backends/ reaches past them to a file, a table or FAISS."""

import inspect
import re
from pathlib import Path

import pytest

from bot.history import HistoryStore
from bot.servers import ServerBook
from bot.state import AnswerHistory, ServerRules
from retrieval.backends import open_index
from retrieval.backends.base import FeedState, IndexStore, WriteBatch
from retrieval.backends.embedded.engine import EmbeddedIndex
from retrieval.backends.embedded.transaction import Transaction
from retrieval.backends.postgres.engine import Batch, PostgresIndex
from retrieval.feeds import FeedBook
from tests.conftest import ROOT


def declared(protocol) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(protocol).items()
            if not name.startswith("_") and callable(member)}


@pytest.mark.parametrize("protocol, implementation", [
    (IndexStore, EmbeddedIndex), (WriteBatch, Transaction), (IndexStore, PostgresIndex), (WriteBatch, Batch),
    (FeedState, FeedBook), (AnswerHistory, HistoryStore), (ServerRules, ServerBook),
])
def test_each_implementation_has_every_declared_method_with_its_parameters(protocol, implementation):
    for name, signature in declared(protocol).items():
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        theirs = inspect.signature(getattr(implementation, name))
        assert list(theirs.parameters) == list(signature.parameters), f"{implementation.__name__}.{name}{theirs}"
    properties = {n for n, m in vars(protocol).items() if isinstance(m, property)}
    for name in properties:
        assert isinstance(getattr(implementation, name, None), property), f"{implementation.__name__}.{name}"


def test_the_settings_open_the_embedded_engine_and_it_is_an_index_store(settings_for):
    store = open_index(settings_for(embedding={"model": "fake"}))
    try:
        assert isinstance(store, EmbeddedIndex) and isinstance(store, IndexStore)
        with store.snapshot():
            assert store.dense([0.0] * 4, 5) is None and store.lexical("anything", 5) is None  # no vector yet
        assert store.figures() == {"documents": 0, "chunks": 0, "segments": 0, "generation": 0}
    finally:
        store.close()


# What only an engine may name: its files, its tables, FAISS.
ENGINE_ONLY = re.compile(r"citebot\.sqlite|seg-|\.faiss\b|\.lex\b|write\.lock|import faiss|faiss\.|"
                         r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(?:documents|chunks|segments|tombstones|stems|stories|"
                         r"story_bands|outlets|meta|retired)\b")


def test_nothing_outside_the_backends_names_an_engines_files_tables_or_faiss():
    offenders = []
    for folder in ("retrieval", "bot"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if Path("retrieval", "backends") in path.relative_to(ROOT).parents:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if ENGINE_ONLY.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
