"""Watched folders with the real watchfiles (inotify): files appear, change and go, and the index follows."""

import fcntl
import threading
import time

from retrieval.errors import IndexBusyError
from retrieval.pipeline import Answerer
from retrieval.watcher import FolderWatcher, watched
from tests.fakes import FakeEmbedder


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def keys(answerer) -> set[str]:
    return {row.key for row in answerer.sources()}


def test_a_watched_folder_is_caught_up_then_followed(answerer, tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "old.txt").write_text("The old lighthouse was painted zqwhite last spring.")
    answerer.ingest([folder])
    (folder / "old.txt").unlink()  # deleted while nobody watched
    (folder / "early.txt").write_text("The ferry zqearly left at dawn.")  # added while nobody watched
    stop = threading.Event()
    thread = threading.Thread(target=FolderWatcher(answerer, [folder]).run, args=(stop,), daemon=True)
    thread.start()
    try:
        early = str((folder / "early.txt").resolve())
        assert wait_for(lambda: keys(answerer) == {early}), keys(answerer)
        time.sleep(0.5)  # the watch has started after catching up
        (folder / "sub").mkdir()
        (folder / "sub" / "new.md").write_text("# Storm\n\nA zqstorm closed the harbour on Tuesday.")
        (folder / ".hidden.txt").write_text("a hidden zqhidden file")
        (folder / "notes.docx").write_bytes(b"PK\x03\x04 not read")
        new = str((folder / "sub" / "new.md").resolve())
        assert wait_for(lambda: new in keys(answerer)), keys(answerer)
        (folder / "sub" / "new.md").write_text("# Storm\n\nA zqgale closed the harbour on Tuesday.")
        assert wait_for(lambda: any("zqgale" in r.text for r in [answerer.store.chunks(
            [h.id for h in answerer.retrieve("zqgale")]).get(h.id) for h in answerer.retrieve("zqgale")] if r))
        (folder / "early.txt").unlink()
        assert wait_for(lambda: keys(answerer) == {new}), keys(answerer)
        import shutil

        shutil.rmtree(folder / "sub")
        assert wait_for(lambda: keys(answerer) == set()), keys(answerer)
        assert answerer.check() == []
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_which_paths_are_watched():
    assert watched("/news/a.txt") and watched("/news/feed.jsonl") and watched("/news/sub")
    assert not watched("/news/.a.txt.swp") and not watched("/news/.git/x.txt") and not watched("/news/a.txt~")
    assert not watched("/news/report.pdf")


def test_changes_seen_while_the_index_is_busy_are_kept_and_indexed_once_it_is_free(settings_for, tmp_path):
    settings = settings_for(embedding={"model": "fake"}, chunking={"max_tokens": 40}, index={"lock_wait_seconds": 0.3})
    answerer = Answerer(settings, FakeEmbedder())
    folder = tmp_path / "news"
    folder.mkdir()
    watcher = FolderWatcher(answerer, [folder])
    watcher.RETRY_S = 0.5
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: watcher.caught_up)
        time.sleep(0.5)  # the watch has started after catching up
        with open(settings.index.dir / "write.lock", "w") as other_writer:
            fcntl.flock(other_writer, fcntl.LOCK_EX)  # another process's long ingest
            for burst in range(3):  # several batches, each failing at least once
                for n in range(4):
                    (folder / f"b{burst}-{n}.txt").write_text(f"The zqboat number {burst}{n} docked at noon.")
                time.sleep(1.5)
            assert keys(answerer) == set() and watcher.waiting == 12
        expected = {str((folder / f"b{b}-{n}.txt").resolve()) for b in range(3) for n in range(4)}
        assert wait_for(lambda: keys(answerer) == expected), expected - keys(answerer)
        assert wait_for(lambda: watcher.waiting == 0)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_catch_up_that_fails_is_tried_again(answerer, tmp_path):
    folder = tmp_path / "news"
    folder.mkdir()
    (folder / "a.txt").write_text("The harbour opened at dawn, zqofficials said.")
    calls = []

    class Flaky:
        def ingest(self, paths, **kwargs):
            calls.append(paths)
            if len(calls) < 3:
                raise IndexBusyError("another citebot process has been writing for 60 s")
            return answerer.ingest(paths, **kwargs)

        def forget_under(self, paths):
            return answerer.forget_under(paths)

    watcher = FolderWatcher(Flaky(), [folder])
    watcher.RETRY_S = 0.0
    assert watcher.flush() is False and not watcher.caught_up
    assert watcher.flush() is False
    assert watcher.flush() is True and watcher.caught_up
    assert keys(answerer) == {str((folder / "a.txt").resolve())}
