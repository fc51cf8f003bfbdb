"""What every engine does alike over its own rows: counters kept in its meta table, the model check, a
document's lead, an id prefix."""

from __future__ import annotations

from retrieval.errors import IndexMismatchError

ID_PREFIX_DIGITS = 6  # `citebot remove 3fa9c1` finds the document whose doc id starts so


def lead(text: str, words: int = 12) -> str:
    """The opening words an untitled document is cited by."""
    head = text.split()[:words]
    return " ".join(head) + ("…" if len(text.split()) > words else "")


def id_prefix(ref: str) -> str | None:
    """`ref` as a doc id prefix (6 hex digits or more, any case), or None."""
    ref = ref.lower()
    if len(ref) >= ID_PREFIX_DIGITS and all(c in "0123456789abcdef" for c in ref):
        return ref
    return None


class MetaCounters:
    """Counters and facts an engine keeps in its meta table, read through its `get_meta`; `where()` names
    the index in messages."""

    def get_meta(self, key: str) -> str | None:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def count_chunks(self) -> int:
        return int(self.get_meta("chunks") or 0)

    def count_documents(self) -> int:
        return int(self.get_meta("documents") or 0)

    def count_copies(self) -> int:
        """Documents grouped into another document's story (each story's members but one)."""
        return int(self.get_meta("copies") or 0)

    def check_model(self, model: str) -> None:
        """IndexMismatchError if the index was built with another embedding model than `model`."""
        built_with = self.get_meta("model")
        if built_with is not None and built_with != model:
            raise IndexMismatchError(
                f"the index in {self.where()} was built with embedding model {built_with!r} "
                f"(dim {self.get_meta('dim')}), not {model!r}: "
                "re-ingest with `citebot ingest --rebuild PATH…` or set embedding.model back"
            )
