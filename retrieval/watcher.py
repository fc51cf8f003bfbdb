"""Watched folders: new and changed files indexed within seconds, deleted ones taken out.

At start the folders are synced once (`ingest --sync`: what changed while nobody watched is caught
up). After that, watchfiles (inotify) reports changes; each batch of changes costs what changed:
the new and changed files are ingested, and the documents of deleted files (or folders) removed.
Hidden files, editor leftovers and files of types citebot does not read are ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from retrieval.errors import CitebotError
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
    """Applies the changes watchfiles reports. A change is kept until the index has taken it: a batch that
    fails (an index busy for longer than index.lock_wait_seconds, a full disk) is tried again every
    RETRY_S, together with whatever changed since, until it lands. Nothing a watcher saw is forgotten."""

    RETRY_S = 2.0

    def __init__(self, writer, paths: list[Path]):
        self.writer = writer  # the Answerer: ingest(paths, sync=…) and forget_under(paths)
        self.paths = [Path(p).resolve() for p in paths]
        self.caught_up = False
        self._waiting: dict[Path, bool] = {}  # changed paths not yet applied -> whether one was added
        self._retry_at = 0.0

    @property
    def waiting(self) -> int:
        """Changed paths seen and not yet in the index."""
        return len(self._waiting)

    def catch_up(self):
        """Bring the index in line with the folders as they are now (an ingest with --sync)."""
        report = self.writer.ingest(self.paths, sync=True)
        self.caught_up = True
        log.info("watch: caught up with %s: %d added, %d updated, %d removed, %d failed",
                 ", ".join(map(str, self.paths)), report.added, report.updated, report.removed, report.failed)
        return report

    def note(self, changes) -> None:
        """Remember one batch of (Change, path) from watchfiles, to be applied by `flush`."""
        from watchfiles import Change

        for kind, path in changes:
            path = Path(path)
            self._waiting[path] = self._waiting.get(path, False) or kind == Change.added

    def flush(self) -> bool:
        """Apply what is waiting, if it is time to; False, keeping it, if the index could not take it."""
        if time.monotonic() < self._retry_at or not (self._waiting or not self.caught_up):
            return True
        try:
            if not self.caught_up:
                self.catch_up()
            self._flush()
        except Exception as error:  # noqa: BLE001 - nothing a batch does stops the watch; it is tried again
            self._retry_at = time.monotonic() + self.RETRY_S
            log.debug("watch: changes not applied", exc_info=True)
            log.warning("watch: %s not indexed yet (%s); trying again in %g s",
                        "the folders" if not self.caught_up else f"{len(self._waiting)} changed paths",
                        _one_line(error), self.RETRY_S)
            return False
        self._retry_at = 0.0
        return True

    def _flush(self) -> None:
        # Each path is judged as it is now, whatever happened to it on the way: a file written then
        # deleted is gone, a new folder is read whole (files written into it before its watch was set
        # up send no event), a folder merely modified is not (that would read all of it per change).
        waiting = dict(self._waiting)
        present = sorted(p for p, added in waiting.items() if p.is_file() or added and p.is_dir())
        gone = sorted(p for p in waiting if not p.exists())
        if gone:
            removed = self.writer.forget_under(gone)
            log.info("watch: %d deleted paths, %d documents removed", len(gone), removed)
        if present:
            report = self.writer.ingest(present)
            for line in report.errors:
                log.warning("watch: %s", line)
            log.info("watch: %d files: %d added, %d updated, %d unchanged, %d failed", len(present), report.added,
                     report.updated, report.unchanged, report.failed)
        for path in waiting:
            self._waiting.pop(path, None)

    def run(self, stop: threading.Event) -> None:
        """Catch up, then follow the folders until `stop` is set. Nothing one batch does stops the loop."""
        from watchfiles import watch

        self.flush()  # the catch-up; if it fails it is tried again below, as a failed batch is
        for changes in watch(*self.paths, watch_filter=lambda _, path: watched(path), debounce=DEBOUNCE_MS,
                             step=100, stop_event=stop, rust_timeout=1000, yield_on_timeout=True,
                             raise_interrupt=False):
            self.note(changes)
            self.flush()


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if isinstance(error, CitebotError) else f"{type(error).__name__}: {text}"
