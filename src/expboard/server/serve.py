"""``expboard server``: parse the flags, open the store, serve the app with uvicorn.

The listening socket is bound here (port 0 picks a free port) and the first line on stdout says where the
server listens: ``expboard server listening on http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import settings

__all__ = ["APP_EXTENSIONS", "add_arguments", "build_parser", "cmd_server", "main", "register", "serve"]

# Upper layers (the team TensorBoard) plug in here without the server importing them: each entry gets the
# parsed arguments and returns None, or a function (app, store, tokens) -> (app, close) that wraps the app
# (serving more routes in front of it) and a function that releases what it started.
AppWrapper = Callable[[Any, Any, list[str]], tuple[Any, Callable[[], None]]]
APP_EXTENSIONS: list[Callable[[argparse.Namespace], AppWrapper | None]] = []


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend-store-uri",
        required=True,
        help="where run history lives: postgresql://user@host:port/db or sqlite:///path/expboard.db",
    )
    p.add_argument(
        "--artifacts-root",
        required=True,
        help="where run files live: a folder, or s3://bucket/prefix (S3-compatible object storage; credentials "
        "from the standard AWS chain)",
    )
    p.add_argument(
        "--s3-endpoint-url",
        help="endpoint of an S3-compatible service such as MinIO (default: AWS_ENDPOINT_URL, else AWS S3)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1; anything else should use --auth-token-file)",
    )
    p.add_argument("--port", type=int, default=5000, help="port (default 5000; 0 picks a free one)")
    p.add_argument(
        "--auth-token-file",
        help="file of accepted bearer tokens, one a line as 'NAME SCOPE TOKEN' (scope read, write or admin) or a "
        "bare TOKEN (scope write); also EXPBOARD_SERVER_TOKENS=tok1,name:read:tok2",
    )
    p.add_argument("--max-request-mb", type=float, default=64, help="largest request body in MiB (default 64)")
    p.add_argument(
        "--presign-downloads-mb",
        type=float,
        default=settings.get("presign_downloads_mb"),
        help="redirect downloads of files of at least this many MiB in S3 to presigned URLs, so clients fetch "
        "them from the object storage itself (they must reach its endpoint); default: everything through the "
        "server (EXPBOARD_PRESIGN_DOWNLOADS_MB)",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="expboard server", description="Serve run history over HTTP.")
    add_arguments(p)
    return p


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(
    backend_store_uri: str,
    artifacts_root: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 5000,
    auth_token_file: str | os.PathLike[str] | None = None,
    max_request_bytes: int = 64 * 1024 * 1024,
    s3_endpoint_url: str | None = None,
    wrappers: Sequence[AppWrapper] = (),
    presign_min_bytes: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM, then close the store. ``wrappers``: see ``APP_EXTENSIONS``."""
    from ..errors import ConfigError

    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"the tracking server needs its web stack ({exc.name}): pip install 'expboard[server]'"
        ) from exc
    from ..stores.sql import SqlStore
    from ..stores.storages import open_file_storage
    from .auth import http_protocol_options, load_tokens

    tokens = load_tokens(auth_token_file)
    if not _is_loopback(host) and not tokens:
        raise ConfigError(
            f"refusing to serve on {host} without auth: give --auth-token-file or set EXPBOARD_SERVER_TOKENS "
            "(without tokens the server only listens on 127.0.0.1)"
        )
    options = {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
    store = SqlStore(backend_store_uri, open_file_storage(artifacts_root, **options))
    closers: list[Callable[[], None]] = []
    try:
        app = create_app(store, tokens=tokens, max_request_bytes=max_request_bytes, presign_min_bytes=presign_min_bytes)
        for wrap in wrappers:
            app, close = wrap(app, store, [t.secret for t in tokens])  # any scope may read
            closers.append(close)
        sock = _bind(host, port)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(
            f"expboard server listening on http://{shown}:{bound} "
            f"(store {store.dialect}, auth {'on' if tokens else 'off'})",
            flush=True,
        )
        config: dict[str, Any] = {
            "log_level": "warning",
            "access_log": False,
            "lifespan": "off",
            "timeout_keep_alive": 60,
            "server_header": False,
            **http_protocol_options(),
        }
        _log_to_stderr()
        server = _make_server(uvicorn.Config(app, **config), _close_all(closers))
        server.run(sockets=[sock])
    finally:
        _close_all(closers)()
        store.close()


def _log_to_stderr() -> None:
    """The server's own log (unexpected errors, and the audit log of who wrote what) goes to stderr."""
    logger = logging.getLogger("expboard.server")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _close_all(closers: list[Callable[[], None]]) -> Callable[[], None]:
    def close() -> None:
        while closers:
            closers.pop()()

    return close


def _make_server(config: Any, before_exit: Callable[[], None]) -> Any:
    """uvicorn's server, calling ``before_exit`` (releasing what the app wrappers started) before it re-raises
    a caught SIGTERM, which would end the process before any ``finally`` around ``run`` runs."""
    import contextlib

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            with super().capture_signals():
                try:
                    yield
                finally:
                    before_exit()

    return Server(config)


def cmd_server(args: argparse.Namespace) -> int:
    serve(
        args.backend_store_uri,
        args.artifacts_root,
        host=args.host,
        port=args.port,
        auth_token_file=args.auth_token_file,
        max_request_bytes=int(args.max_request_mb * 1024 * 1024),
        s3_endpoint_url=args.s3_endpoint_url,
        wrappers=[w for w in (ext(args) for ext in APP_EXTENSIONS) if w is not None],
        presign_min_bytes=None if args.presign_downloads_mb is None else int(args.presign_downloads_mb * 1024 * 1024),
    )
    return 0


def register(subparsers: Any, runs_subparsers: Any = None) -> None:
    """Add ``server`` to the ``expboard`` command (see ``expboard.cli._EXTENSIONS``)."""
    p = subparsers.add_parser("server", help="serve run history over HTTP (REST + OpenAPI) for many runs")
    add_arguments(p)
    p.set_defaults(func=cmd_server)


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import ExpboardError

    args = build_parser().parse_args(argv)
    try:
        return cmd_server(args)
    except ExpboardError as exc:
        print(f"expboard server: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
