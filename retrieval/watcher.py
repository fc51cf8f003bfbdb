"""Watched folders: new and changed files indexed within seconds, deleted ones taken out.

At start the folders are synced once (`ingest --sync`: what changed while nobody watched is caught
up). After that, watchfiles (inotify) reports changes; each batch of changes costs what changed:
the new and changed files are ingested, and the documents of deleted files (or folders) removed.
Hidden files, editor leftovers and files of types citebot does not read are ignored.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from retrieval.ingest import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)

DEBOUNCE_MS = 1000  # changes within this long are taken together (a file written in several steps)


def watched(path: str) -> bool:
    """A path whose changes matter: a supported type, not hidden, not an editor's temporary file."""
    p = Path(path)
    if any(part.startswith(".") for part in p.parts[1:]) or p.name.endswith("~"):
        return False
    return p.suffix.lower() in SUPPORTED_SUFFIXES or p.suffix == ""  # a folder (or a deleted one)


class FolderWatcher:
    def __init__(self, writer, paths: list[Path]):
        self.writer = writer  # the Answerer: ingest(paths, sync=…) and forget_under(paths)
        self.paths = [Path(p).resolve() for p in paths]

    def catch_up(self):
        """Bring the index in line with the folders as they are now (an ingest with --sync)."""
        report = self.writer.ingest(self.paths, sync=True)
        log.info("watch: caught up with %s: %d added, %d updated, %d removed, %d failed",
                 ", ".join(map(str, self.paths)), report.added, report.updated, report.removed, report.failed)
        return report

    def apply(self, changes) -> None:
        """One batch of (Change, path) from watchfiles."""
        from watchfiles import Change

        # A new folder is read whole: files written into it before its watch was set up send no event.
        # A folder merely modified is not: that would read all of it for each change inside.
        present = sorted({Path(p) for kind, p in changes
                          if kind != Change.deleted and (Path(p).is_file() or kind == Change.added and Path(p).is_dir())})
        gone = sorted({Path(p) for kind, p in changes if kind == Change.deleted and not Path(p).exists()})
        if gone:
            removed = self.writer.forget_under(gone)
            log.info("watch: %d deleted paths, %d documents removed", len(gone), removed)
        if present:
            report = self.writer.ingest(present)
            for line in report.errors:
                log.warning("watch: %s", line)
            log.info("watch: %d files: %d added, %d updated, %d unchanged, %d failed", len(present), report.added,
                     report.updated, report.unchanged, report.failed)

    def run(self, stop: threading.Event) -> None:
        """Catch up, then follow the folders until `stop` is set. Nothing one batch does stops the loop."""
        from watchfiles import watch

        try:
            self.catch_up()
        except Exception:  # noqa: BLE001 - the watch goes on; the next change is tried again
            log.exception("watch: catching up failed")
        for changes in watch(*self.paths, watch_filter=lambda _, path: watched(path), debounce=DEBOUNCE_MS,
                             step=100, stop_event=stop, rust_timeout=1000, yield_on_timeout=False,
                             raise_interrupt=False):
            try:
                self.apply(changes)
            except Exception:  # noqa: BLE001
                log.exception("watch: a batch of changes failed")
