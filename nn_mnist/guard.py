"""Who may drive the web app, as Jupyter protects its own server.

- **Host**: every request must name the address served (``127.0.0.1:8000``, ``localhost:8000``) in
  its ``Host`` header: a page of another site that rebinds its own name to 127.0.0.1 (DNS
  rebinding) sends its own name there and is refused. Bound to every interface (``--host
  0.0.0.0``) the server cannot know its names: the Host check is off, the token stays.
- **Token**: a random token per start, printed in the URL the server prints
  (``http://127.0.0.1:8000/?token=...``). Opening that URL sets it as a cookie (HttpOnly,
  SameSite=Strict) and redirects to the page; every request that changes state must carry it, as
  that cookie or as ``Authorization: token TOKEN``. Reading (the page, predictions and
  explanations, the lists) stays open. No response carries the token.
- **Origin**: a state-changing request that says it comes from another origin is refused, token
  or not (a browser always says where a cross-site request comes from).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
from urllib.parse import parse_qs

OPEN_POSTS = ("/api/predict", "/api/explain")  # reads, though POSTed: an image is the question
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclasses.dataclass(frozen=True)
class Access:
    token: str
    hosts: tuple[str, ...] = ()  # Host header values accepted; empty: any (bound to 0.0.0.0)
    cookie: str = "nn-mnist-token"

    def names(self, host: str, port: int) -> Access:
        """This access for a server on ``host:port``: the names a browser on this machine uses."""
        if host in ("0.0.0.0", "::", ""):
            return dataclasses.replace(self, cookie=f"{self.cookie}-{port}")
        local = ("127.0.0.1", "localhost", "[::1]") if host in ("127.0.0.1", "localhost") else ()
        hosts = {f"{h}:{port}" for h in (host if ":" not in host else f"[{host}]", *local)}
        return dataclasses.replace(self, hosts=tuple(sorted(hosts)), cookie=f"{self.cookie}-{port}")

    def valid(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def authorized(self, headers: dict) -> bool:
        """The request carries the token (the header, or the cookie)."""
        auth = headers.get("authorization", "")
        if auth.lower().startswith("token ") and self.valid(auth[6:].strip()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and self.valid(value):
                return True
        return False


def _headers(scope) -> dict:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _refuse(send, status: int, message: str, extra=()) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + list(extra)})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware enforcing :class:`Access` (Host on every request; Origin and token on
    every request that changes state), and turning ``GET /?token=...`` into the cookie."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        a = self.access
        headers = _headers(scope)
        host = headers.get("host", "")
        if a.hosts and host not in a.hosts:
            return await _refuse(send, 403, f"Host {host!r} is not the address served")
        method, path = scope["method"], scope["path"]
        if path == "/" and method == "GET":
            token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            if token is not None:
                if not a.valid(token[0]):
                    return await _refuse(send, 403, "token: not this server's token")
                cookie = f"{a.cookie}={a.token}; Path=/; HttpOnly; SameSite=Strict"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 303,
                        "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0")],
                    }
                )  # fmt: skip
                return await send({"type": "http.response.body", "body": b""})
        if method not in SAFE_METHODS and path not in OPEN_POSTS:
            origin = headers.get("origin")
            if origin is not None and (
                origin == "null" or origin.split("://", 1)[-1] != host or not host
            ):
                return await _refuse(send, 403, f"Origin {origin!r} is not this server")
            if not a.authorized(headers):
                return await _refuse(
                    send, 403, "this request changes state: it needs the token the server printed"
                )
        return await self.app(scope, receive, send)
