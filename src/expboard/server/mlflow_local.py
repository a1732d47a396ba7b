"""The tracking server in a thread of this process, on 127.0.0.1, for an embedded workspace's MLflow clients.

MLflow's client speaks only HTTP (or its own stores), so an embedded workspace (SQLite + a folder) needs a
server to be reachable for it: ``expboard server`` in another process, or this one, which serves the
workspace's own store from a thread, on a free port, with a random token that only this process knows
(:meth:`LocalServer.mlflow_tracking_uri` hands it to MLflow's client through ``MLFLOW_TRACKING_TOKEN``, which
child processes inherit). :meth:`LocalServer.stop` ends it.

>>> server = LocalServer(ws.store).start()                    # doctest: +SKIP
>>> mlflow.set_tracking_uri(server.mlflow_tracking_uri())     # doctest: +SKIP
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from typing import Any

from ..errors import ConfigError, StoreUnavailableError
from ..stores.base import Store

__all__ = ["LocalServer"]


class LocalServer:
    """``create_app(store)`` served by uvicorn in a daemon thread on 127.0.0.1."""

    def __init__(self, store: Store, port: int = 0) -> None:
        self.store = store
        self.port = port
        self.token = secrets.token_hex(24)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 30.0) -> LocalServer:
        if self.running:
            return self
        try:
            import uvicorn

            from .app import create_app
        except ImportError as exc:
            raise ConfigError(
                f"serving a store to MLflow's client needs the tracking server's web stack "
                f"({exc.name}): pip install 'expboard[server]', or run `expboard server` and use its URL"
            ) from exc
        app = create_app(self.store, tokens=[self.token])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off", server_header=False, timeout_keep_alive=60
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="expboard-mlflow-server"
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise StoreUnavailableError(f"the in-process tracking server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def mlflow_tracking_uri(self) -> str:
        """The URL for ``mlflow.set_tracking_uri``; sets ``MLFLOW_TRACKING_TOKEN`` to this server's token."""
        if not self.running:
            raise StoreUnavailableError("the in-process tracking server is not running: call start() first")
        os.environ["MLFLOW_TRACKING_TOKEN"] = self.token
        return self.url

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """End the server thread; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
