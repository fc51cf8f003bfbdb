"""Collections: named corpora, each a complete index of its own (store, segments, feed book).

The default collection is the index folder itself (`index.dir`, the seeds on first use), so an
index from before collections is the default one. A collection NAME lives in
`index.dir/collections/NAME`; its corpus paths, watched folders and feeds come from the
`[collections.NAME]` table, and feeds added with `citebot --collection NAME feeds add` go into its
own feed book. A question asks one collection and costs what that collection holds: nothing of
another is read, so no filter can leak an article from one into another.
"""

from __future__ import annotations

import re
from pathlib import Path

from retrieval.errors import SettingsError
from retrieval.settings import CollectionSettings, Settings

DEFAULT = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_name(name: str) -> str:
    """`name` if it can name a collection (it becomes a folder name); SettingsError saying why not."""
    if not _NAME.fullmatch(name or ""):
        raise SettingsError(
            f"{name!r} cannot name a collection: use 1 to 64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or a digit, e.g. harbour-news")
    return name


def folder(settings: Settings, name: str) -> Path:
    """The index folder of collection `name`."""
    name = check_name(name)
    return settings.index.dir if name == DEFAULT else settings.index.dir / "collections" / name


def settings_for(settings: Settings, name: str) -> Settings:
    """The settings with collection `name`'s index folder, corpus paths, watched folders and feeds."""
    if check_name(name) == DEFAULT:
        return settings
    table = settings.collections.get(name, CollectionSettings())
    return settings.model_copy(update={
        "index": settings.index.model_copy(update={"dir": folder(settings, name), "collection": name}),
        "corpus": settings.corpus.model_copy(update={"paths": list(table.paths)}),
        "watch": settings.watch.model_copy(update={"paths": list(table.watch)}),
        "feeds": list(table.feeds),
    })


def names(settings: Settings) -> list[str]:
    """Every collection: the default, those named in the settings, and those with an index or feeds stored."""
    from retrieval.backends import stored_collections

    found = set(settings.collections) | {name for name in stored_collections(settings) if _NAME.fullmatch(name)}
    for name in list(found):
        check_name(name)
    return [DEFAULT, *sorted(found - {DEFAULT})]
