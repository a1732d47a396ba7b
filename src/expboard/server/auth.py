"""Bearer-token auth and request size limits, as plain ASGI middleware (cheap on the hot metric path).

Tokens come from ``--auth-token-file`` (one token a line, ``#`` comments) and the environment variable
``EXPBOARD_SERVER_TOKENS`` (comma-separated). A request is let in when its ``Authorization: Bearer`` token
equals one of them; every configured token is compared in constant time, so timing tells nothing.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import AuthError, ConfigError, ExpboardError, PayloadTooLargeError

__all__ = ["TOKENS_ENV", "AuthMiddleware", "SizeLimitMiddleware", "load_tokens"]

TOKENS_ENV = settings.env("server_tokens")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def load_tokens(token_file: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> list[str]:
    """The accepted tokens from a token file and ``EXPBOARD_SERVER_TOKENS``; empty means auth is off."""
    environ = dict(os.environ) if environ is None else environ
    tokens: list[str] = []
    if token_file is not None:
        try:
            text = Path(token_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the auth token file {str(token_file)!r}: {exc}") from exc
        tokens += [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not tokens:
            raise ConfigError(f"the auth token file {str(token_file)!r} holds no token")
    tokens += [t.strip() for t in environ.get(TOKENS_ENV, "").split(",") if t.strip()]
    for t in tokens:
        if len(t) < 16:
            raise ConfigError("auth tokens must be at least 16 characters long (try: openssl rand -hex 32)")
    return tokens


async def send_error(send: Send, exc: ExpboardError, extra_headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": type(exc).__name__, "message": str(exc)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra_headers]
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Refuse (401, nothing done) every request without a valid bearer token, except ``open_paths``."""

    def __init__(self, app: ASGIApp, tokens: Iterable[str], open_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.tokens = [t.encode() for t in tokens]
        self.open_paths = frozenset(open_paths)

    def allowed(self, header: bytes | None) -> bool:
        if header is None or header[:7].lower() != b"bearer ":
            return False
        given = header[7:].strip()
        ok = False
        for token in self.tokens:  # no early exit: the time taken does not depend on which token matched
            ok |= hmac.compare_digest(given, token)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not self.allowed(header):
            message = "missing bearer token" if header is None else "invalid bearer token"
            await send_error(
                send,
                AuthError(f"{message}: send 'Authorization: Bearer <token>' (the client reads EXPBOARD_TOKEN)"),
                [(b"www-authenticate", b'Bearer realm="expboard"')],
            )
            return
        await self.app(scope, receive, send)


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
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                from ..errors import ValidationError

                await send_error(send, ValidationError("invalid Content-Length"))
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
