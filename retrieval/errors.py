"""citebot's exceptions. Each message says what is wrong and what to do next, in one line."""


class CitebotError(Exception):
    """Base of every error a user can act on; the CLI prints its message and exits non-zero."""

    exit_code = 1


class SettingsError(CitebotError):
    """A setting has a value that is not allowed."""

    exit_code = 2


class QuestionError(CitebotError):
    """The question cannot be asked as it is (empty, too long)."""

    exit_code = 2


class IngestError(CitebotError):
    """One input file or record could not be read; the rest of the batch goes on."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class IndexMismatchError(CitebotError):
    """The index on disk was built with another embedding model or dimension."""


class IndexUnavailableError(CitebotError):
    """The index's storage (a database server) cannot be reached now; nothing was changed."""


class StateError(CitebotError):
    """A small state store (the feed book, the bot's history or server rules) cannot be read or written."""


class IndexBusyError(CitebotError):
    """Another ingest holds the write lock."""


class ModelLoadError(CitebotError):
    """The embedding model could not be loaded from disk."""


class IndexSchemaError(CitebotError):
    """The index on disk was written by another version of citebot."""

    def __init__(self, where, version: int, current: int):
        if version < current:
            what = (f"the index in {where} was written by an older citebot (schema {version}, this one reads "
                    f"{current}): run `citebot migrate` to upgrade it in place, keeping every article")
        else:
            what = (f"the index in {where} was written by a newer citebot (schema {version}; this one reads "
                    f"{current}): upgrade citebot, or rebuild it with `citebot ingest --rebuild PATH…`")
        super().__init__(what)
        self.version = version
