"""Run an ingest in a child process, for the crash and concurrency tests.

usage: python ingest_worker.py INDEX_DIR MODE PATH...
MODE: plain | kill-before-commit (SIGKILL after the vector file is written, before SQLite commits; on
      PostgreSQL, with TEST_INDEX_URL set: once the batch's rows are written, before COMMIT)
      | kill-after-commits:N (SIGKILL once N commits have landed) | slow (each embedding call sleeps 0.2 s)
"""

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from retrieval.backends.embedded import engine as engine_module  # noqa: E402
from retrieval import writer as writer_module  # noqa: E402
from retrieval.pipeline import Answerer  # noqa: E402
from retrieval.settings import load_settings  # noqa: E402
from tests.fakes import FakeEmbedder  # noqa: E402


class SlowEmbedder(FakeEmbedder):
    def embed_documents(self, texts):
        time.sleep(0.2)
        return super().embed_documents(texts)


def main() -> None:
    folder, mode, *paths = sys.argv[1:]
    index = {"dir": folder}
    if os.environ.get("TEST_INDEX_URL"):  # the PostgreSQL engine, in that database
        index["url"] = os.environ["TEST_INDEX_URL"]
    settings = load_settings(index=index, embedding={"model": "fake"}, chunking={"max_tokens": 40},
                             answer={"min_score": 0.0})
    if mode == "kill-before-commit":
        save = engine_module.save_index

        def save_then_die(index, path):
            save(index, path)
            os.kill(os.getpid(), signal.SIGKILL)

        engine_module.save_index = save_then_die
        from retrieval.backends.postgres import engine as postgres_module

        finish = postgres_module.Batch.finish

        def finish_then_die(self):
            finish(self)
            os.kill(os.getpid(), signal.SIGKILL)

        postgres_module.Batch.finish = finish_then_die
    if mode.startswith("kill-after-commits:"):
        commit, wanted, done = writer_module.Writer._commit, int(mode.split(":")[1]), []

        def commit_then_maybe_die(self, *args, **kwargs):
            result = commit(self, *args, **kwargs)
            done.append(1)
            if len(done) == wanted:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        writer_module.Writer._commit = commit_then_maybe_die
    embedder = SlowEmbedder() if mode == "slow" else FakeEmbedder()
    report = Answerer(settings, embedder).ingest([Path(p) for p in paths])
    print(f"added {report.added}", flush=True)


if __name__ == "__main__":
    main()
