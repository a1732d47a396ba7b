"""Bearer-token auth with scopes, request size limits and bounded request headers, as plain ASGI middleware
(cheap on the hot metric path).

Tokens come from ``--auth-token-file`` and the environment variable ``EXPBOARD_SERVER_TOKENS``. A line of the
token file is either ``NAME SCOPE TOKEN`` (whitespace-separated) or, as in older files, a bare ``TOKEN``
(then named after its line, ``tokens.txt:3``, with scope ``write``); ``#`` starts a comment line. The
environment variable holds comma-separated ``TOKEN`` or ``NAME:SCOPE:TOKEN`` entries. Scopes:

- ``read``: GET and HEAD only (TensorBoard, ``expboard runs list``, dashboards);
- ``write``: everything a training job does (runs, metrics, files);
- ``admin``: all of that, and the admin routes (``GET /api/v1/tokens``).

A request is let in when its ``Authorization: Bearer`` token equals one of them; every configured token is
compared in constant time, so timing tells nothing. Every write (anything but GET and HEAD) is logged on
the ``expboard.server.audit`` logger with the name of the token that made it and the answer's status.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import AuthError, ConfigError, ExpboardError, ForbiddenError, PayloadTooLargeError, ValidationError

__all__ = [
    "MAX_HEADER_BYTES",
    "SCOPES",
    "TOKENS_ENV",
    "TOKEN_SCOPE_KEY",
    "AuthMiddleware",
    "SizeLimitMiddleware",
    "Token",
    "http_protocol_options",
    "load_tokens",
]

TOKENS_ENV = settings.env("server_tokens")
SCOPES = ("read", "write", "admin")
TOKEN_SCOPE_KEY = "expboard.token"  # the ASGI scope entry holding the request's Token
MAX_HEADER_BYTES = 64 * 1024  # request line and headers together; more is refused with 431 before any auth
_READ_METHODS = frozenset({"GET", "HEAD"})
_NAME_RE = re.compile(r"[A-Za-z0-9_.@:-]{1,64}")
_audit = logging.getLogger("expboard.server.audit")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Token:
    """An accepted bearer token, its name (shown in logs, never the token) and its scope."""

    name: str
    scope: str
    secret: str

    def __repr__(self) -> str:  # never print the secret
        return f"Token(name={self.name!r}, scope={self.scope!r})"


ANONYMOUS = Token("anonymous", "admin", "")  # every request when auth is off


def _make_token(name: str, scope: str, secret: str, where: str) -> Token:
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: invalid token name {name!r}: use 1 to 64 letters, digits or '_.@:-'")
    if scope not in SCOPES:
        raise ConfigError(f"{where}: invalid scope {scope!r} for token {name!r}: use one of {', '.join(SCOPES)}")
    if len(secret) < 16:
        raise ConfigError(f"{where}: auth tokens must be at least 16 characters long (try: openssl rand -hex 32)")
    return Token(name, scope, secret)


def load_tokens(token_file: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> list[Token]:
    """The accepted tokens from a token file and ``EXPBOARD_SERVER_TOKENS``; empty means auth is off."""
    environ = dict(os.environ) if environ is None else environ
    tokens: list[Token] = []
    if token_file is not None:
        try:
            text = Path(token_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the auth token file {str(token_file)!r}: {exc}") from exc
        label = Path(token_file).name
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            where = f"{token_file}, line {number}"
            if len(fields) == 1:
                tokens.append(_make_token(f"{label}:{number}", "write", fields[0], where))
            elif len(fields) == 3:
                tokens.append(_make_token(fields[0], fields[1], fields[2], where))
            else:
                raise ConfigError(
                    f"{where}: expected 'NAME SCOPE TOKEN' (scope read, write or admin) or a bare TOKEN, "
                    f"got {len(fields)} fields"
                )
        if not tokens:
            raise ConfigError(f"the auth token file {str(token_file)!r} holds no token")
    entries = [t.strip() for t in environ.get(TOKENS_ENV, "").split(",") if t.strip()]
    for i, entry in enumerate(entries, 1):
        parts = entry.split(":")
        where = f"{TOKENS_ENV}, entry {i}"
        if len(parts) == 3 and parts[1] in SCOPES:
            tokens.append(_make_token(parts[0], parts[1], parts[2], where))
        else:
            tokens.append(_make_token(f"env:{i}", "write", entry, where))
    names = [t.name for t in tokens]
    if len(set(names)) != len(names):
        raise ConfigError(f"token names must be unique; repeated: {sorted({n for n in names if names.count(n) > 1})}")
    if len({t.secret for t in tokens}) != len(tokens):
        raise ConfigError("the same token is listed twice; give every person or job a token of its own")
    return tokens


# MLflow's routes answer in MLflow's error shape, so the stock client raises its own MlflowException
_MLFLOW_PATHS = ("/api/2.0/mlflow", "/ajax-api/", "/api/3.0/mlflow")
_MLFLOW_CODES = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED"}


def _mlflow_shaped(path: str, exc: ExpboardError) -> bytes | None:
    if not path.startswith(_MLFLOW_PATHS) or exc.status_code not in _MLFLOW_CODES:
        return None
    message = str(exc).replace("(the client reads EXPBOARD_TOKEN)", "(MLflow clients send MLFLOW_TRACKING_TOKEN)")
    return json.dumps({"error_code": _MLFLOW_CODES[exc.status_code], "message": message}).encode()


async def send_error(
    send: Send, exc: ExpboardError, extra_headers: Iterable[tuple[bytes, bytes]] = (), path: str = ""
) -> None:
    body = _mlflow_shaped(path, exc) or json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Refuse (401, nothing done) every request without a valid bearer token, except ``open_paths``; refuse
    (403) what the token's scope does not allow; log every write with the token's name."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str | Token], open_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.tokens = [t if isinstance(t, Token) else Token(f"env:{i}", "write", t) for i, t in enumerate(tokens, 1)]
        self._secrets = [t.secret.encode() for t in self.tokens]
        self.open_paths = frozenset(open_paths)

    def match(self, header: bytes | None) -> Token | None:
        if header is None or header[:7].lower() != b"bearer ":
            return None
        given = header[7:].strip()
        found = -1
        for i, secret in enumerate(self._secrets):  # no early exit: the time taken does not depend on the match
            if hmac.compare_digest(given, secret):
                found = i
        return self.tokens[found] if found >= 0 else None

    def allowed(self, header: bytes | None) -> bool:
        return self.match(header) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.tokens:
            scope[TOKEN_SCOPE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.open_paths:
            scope[TOKEN_SCOPE_KEY] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        token = self.match(header)
        if token is None:
            message = "missing bearer token" if header is None else "invalid bearer token"
            await send_error(
                send,
                AuthError(f"{message}: send 'Authorization: Bearer <token>' (the client reads EXPBOARD_TOKEN)"),
                # closed after the 401: a client without a token does not get to send a body on this connection
                [(b"www-authenticate", b'Bearer realm="expboard"'), (b"connection", b"close")],
                path=scope["path"],
            )
            return
        scope[TOKEN_SCOPE_KEY] = token
        method = scope["method"]
        if method in _READ_METHODS:
            await self.app(scope, receive, send)
            return
        if token.scope == "read":
            _audit.info("refused %s %s: token %r is read-only", method, scope["path"], token.name)
            await send_error(
                send,
                ForbiddenError(
                    f"token {token.name!r} is read-only (scope 'read'): it may only GET; "
                    "use a token with scope 'write' to log runs"
                ),
                path=scope["path"],
            )
            return
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            _audit.info("token %r: %s %s -> %s", token.name, method, scope["path"], status or "no answer")


_DRAIN_FACTOR = 16  # bodies up to this many times the limit are read and dropped before the 413


async def _drain(receive: Receive, limit: int | None = None) -> None:
    """Read and drop the rest of a request body (at most ``limit`` bytes)."""
    seen = 0
    while limit is None or seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


class SizeLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413: at once from Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"request body of {size} bytes is over the server's limit of {self.max_bytes} bytes "
            "(expboard server --max-request-mb)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            try:
                size = int(length) if length.isdigit() and len(length) <= 20 else -1
            except ValueError:
                size = -1
            if size < 0:
                await send_error(send, ValidationError("invalid Content-Length"), [(b"connection", b"close")])
                return
            if size > self.max_bytes:
                if size <= _DRAIN_FACTOR * self.max_bytes:
                    await _drain(receive)  # so that a client still sending reads the 413, not a reset
                await send_error(send, self._too_large(size), [(b"connection", b"close")])
                return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body"):
                        await _drain(receive, _DRAIN_FACTOR * self.max_bytes)
                    raise self._too_large(f"more than {self.max_bytes}")
            return message

        await self.app(scope, limited_receive, send)


def http_protocol_options(max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """uvicorn settings that refuse requests whose request line and headers exceed ``max_header_bytes`` (431,
    connection closed) while they arrive, so nobody gets to send megabytes of headers before the 401.

    With httptools (the fast parser, which sets no limit of its own) a small subclass of uvicorn's protocol
    counts the bytes; without it, h11's own limit does the same."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return {"http": "h11", "h11_max_incomplete_event_size": max_header_bytes}

    class BoundedHeadersProtocol(HttpToolsProtocol):
        _awaiting_headers = True
        _header_bytes = 0
        _completed = False

        def data_received(self, data: bytes) -> None:
            self._completed = False
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self._completed:  # a message ended in this piece: count the next one's headers from here
                self._header_bytes = 0
            elif self._awaiting_headers:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse()

        def on_headers_complete(self) -> None:
            self._awaiting_headers = False
            self._header_bytes = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._awaiting_headers = True
            self._completed = True
            super().on_message_complete()

        def _refuse(self) -> None:
            body = json.dumps(
                {
                    "error": "ValidationError",
                    "message": f"request headers over {max_header_bytes} bytes; send fewer or shorter headers",
                }
            ).encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                + body
            )
            self.transport.close()

    return {"http": BoundedHeadersProtocol}
