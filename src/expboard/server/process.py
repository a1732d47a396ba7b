"""A tracking server in a child process on 127.0.0.1, for tests, benchmarks and notebooks.

>>> with ServerProcess("sqlite:////tmp/s/expboard.db", "/tmp/s/artifacts") as server:  # doctest: +SKIP
...     store = HttpStore(server.url)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType

from ..children import end_group_with_me, stop_watcher
from .auth import TOKENS_ENV

__all__ = ["ServerProcess"]

_READY = "expboard server listening on "


class ServerProcess:
    """``python -m expboard.server`` on a free port; :meth:`stop` ends it, :meth:`restart` brings it back
    on the same port. ``tokens`` are passed through ``EXPBOARD_SERVER_TOKENS``, ``auth_token_file`` as
    ``--auth-token-file``."""

    def __init__(
        self,
        backend_store_uri: str,
        artifacts_root: str | os.PathLike[str],
        tokens: list[str] | None = None,
        port: int = 0,
        max_request_mb: float | None = None,
        env: dict[str, str] | None = None,
        auth_token_file: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_root: Path | str = str(artifacts_root) if "://" in str(artifacts_root) else Path(artifacts_root)
        self.tokens = tokens or []
        self.port = port
        self.max_request_mb = max_request_mb
        self.env = env
        self.auth_token_file = auth_token_file
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[str] | None = None
        self.output: deque[str] = deque(maxlen=200)
        self._reader: threading.Thread | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        args = [
            sys.executable,
            "-m",
            "expboard.server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-root",
            str(self.artifacts_root),
            "--port",
            str(self.port),
        ]
        if self.auth_token_file is not None:
            args += ["--auth-token-file", str(self.auth_token_file)]
        if self.max_request_mb is not None:
            args += ["--max-request-mb", str(self.max_request_mb)]
        args += self.extra_args
        env = {**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        env.pop(TOKENS_ENV, None)
        if self.tokens:
            env[TOKENS_ENV] = ",".join(self.tokens)
        deadline = time.monotonic() + timeout
        while True:  # a restart on the same port may briefly find it taken
            self.output.clear()
            self.process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if line.startswith(_READY):
                self.port = int(line.split()[4].rsplit(":", 1)[1])
                break
            self.output.append(line)
            rest = self.process.stdout.read()
            self.process.wait()
            self.output.extend(rest.splitlines())
            if "Address already in use" not in rest or time.monotonic() > deadline:
                self.process = None
                raise RuntimeError("the expboard server did not start:\n" + "\n".join(self.output))
            time.sleep(0.2)
        self._watcher = end_group_with_me(self.process.pid)  # this process killed (-9): the server goes too
        self._reader = threading.Thread(
            target=self._drain, args=(self.process,), daemon=True, name="expboard-server-output"
        )
        self._reader.start()
        return self

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line.rstrip("\n"))

    def stop(self, kill: bool = False, timeout: float = 20.0) -> None:
        """End the server: SIGTERM (graceful) or, with ``kill``, SIGKILL. Safe to call twice."""
        proc, self.process = self.process, None
        stop_watcher(self._watcher)
        self._watcher = None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None
        if proc.stdout is not None:
            proc.stdout.close()

    def restart(self, kill: bool = False, down_for: float = 0.0) -> None:
        self.stop(kill=kill)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
