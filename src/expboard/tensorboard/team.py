"""``expboard server --tensorboard``: one TensorBoard for the whole team, next to the tracking server's API.

The server's store is served by the data provider (in the server process); a TensorBoard process reads
it (``--grpc_data_provider``, ``--path_prefix /tensorboard``) on a private loopback port, and the server
forwards ``/tensorboard/...`` to it behind the same tokens as the API. ``/tensorboard/experiment/<name>/``
shows an experiment; the Runs tab at ``/tensorboard/`` lists the experiments.

A browser cannot send a bearer header, so with auth on, open ``/tensorboard/?token=<token>`` once: a valid
token is kept in an HttpOnly cookie (path ``/tensorboard``) for the following requests; scripts may send
``Authorization: Bearer <token>`` as for the API.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from .launcher import Tensorboard
from .provider import DataProviderServer

__all__ = ["PREFIX", "TeamTensorboard", "server_extension"]

PREFIX = "/tensorboard"
COOKIE = "expboard_token"
_AUTH_ERROR = b'{"error": "AuthError", "message": "open /tensorboard/?token=<token> once, or send a bearer token"}'
_HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"proxy-authorization"}


class TeamTensorboard:
    """The provider and TensorBoard behind the server, and the ASGI wrapper that routes to them."""

    def __init__(self, store: Any, tokens: list[str]) -> None:
        self.tokens = [t.encode() for t in tokens]
        self.provider = DataProviderServer(store)
        self.tensorboard: Tensorboard | None = None

    def start(self) -> None:
        address = self.provider.start()
        self.tensorboard = Tensorboard([], port=0, grpc_data_provider=address, path_prefix=PREFIX)
        self.tensorboard.start()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.stop()
            self.tensorboard = None
        self.provider.stop()

    def _token_ok(self, given: bytes | None) -> bool:
        ok = False
        for token in self.tokens:  # constant time, no early exit
            ok |= given is not None and hmac.compare_digest(given, token)
        return ok

    def wrap(self, api: Any) -> Any:
        """An ASGI app: ``/tensorboard...`` to TensorBoard (auth checked here), the rest to ``api``."""
        from starlette.concurrency import run_in_threadpool

        async def app(scope: Any, receive: Any, send: Any) -> None:
            path = scope.get("path", "")
            if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
                await api(scope, receive, send)
                return
            headers = dict(scope["headers"])
            query = parse_qs(scope.get("query_string", b"").decode())
            if self.tokens:
                bearer = headers.get(b"authorization", b"")
                given = bearer[7:].strip() if bearer[:7].lower() == b"bearer " else None
                cookie = _cookie(headers.get(b"cookie", b""), COOKIE)
                from_query = query.get("token", [None])[0]
                if from_query is not None and self._token_ok(from_query.encode()):
                    await _send(
                        send,
                        303,
                        [
                            (b"location", quote(path).encode()),
                            (
                                b"set-cookie",
                                f"{COOKIE}={from_query}; Path={PREFIX}; HttpOnly; SameSite=Strict".encode(),
                            ),
                        ],
                        b"",
                    )
                    return
                if not (self._token_ok(given) or self._token_ok(cookie)):
                    body = (
                        b'{"error": "AuthError", "message": "open /tensorboard/?token=<token> or send a bearer token"}'
                    )
                    await _send(send, 401, [(b"content-type", b"application/json")], body)
                    return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            target = path + (("?" + scope["query_string"].decode()) if scope.get("query_string") else "")
            status, out_headers, data = await run_in_threadpool(self._forward, scope["method"], target, headers, body)
            await _send(send, status, out_headers, data)

        return app

    def _forward(
        self, method: str, target: str, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self.tensorboard is not None and self.tensorboard.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.tensorboard.port, timeout=120)
        try:
            forwarded = {
                k.decode("latin-1"): v.decode("latin-1")
                for k, v in headers.items()
                if k not in _HOP_BY_HOP and k not in (b"host", b"authorization", b"cookie", b"content-length")
            }
            conn.request(method, target, body=body or None, headers=forwarded)
            resp = conn.getresponse()
            data = resp.read()
            out = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in resp.getheaders()
                if k.lower().encode("latin-1") not in _HOP_BY_HOP and k.lower() != "content-length"
            ]
            return resp.status, out, data
        except OSError as exc:
            return 502, [(b"content-type", b"text/plain")], f"TensorBoard is not answering: {exc}".encode()
        finally:
            conn.close()


def _cookie(header: bytes, name: str) -> bytes | None:
    for part in header.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key.decode("latin-1") == name:
            return value
    return None


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def server_extension(
    args: argparse.Namespace,
) -> Callable[[Any, Any, list[str]], tuple[Any, Callable[[], None]]] | None:
    """For ``expboard.server.serve.APP_EXTENSIONS``: the team TensorBoard when ``--tensorboard`` is given."""
    if not getattr(args, "tensorboard", False):
        return None

    def wrap(app: Any, store: Any, tokens: list[str]) -> tuple[Any, Callable[[], None]]:
        team = TeamTensorboard(store, tokens)
        team.start()
        pid = team.tensorboard.pid if team.tensorboard is not None else None
        print(f"team TensorBoard at {PREFIX}/ of this server (auth {'on' if tokens else 'off'}, pid {pid})", flush=True)
        return team.wrap(app), team.close

    return wrap
