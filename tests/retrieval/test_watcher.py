"""Watched folders with the real watchfiles (inotify): files appear, change and go, and the index follows."""

import threading
import time

from retrieval.watcher import FolderWatcher, watched


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
