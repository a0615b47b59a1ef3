"""A lean JSON answer for the hot POST routes.

Litestar turns a ``Response`` into an ``ASGIResponse`` per request: it merges header dicts and
cookie lists, resolves type encoders, builds a ``MutableScopeHeaders`` (which lower-cases and
searches its list for every ``setdefault``) and renders through the generic serializer.
On the session route that was ~9 % of the CPU. ``JSONAnswer`` is still a Litestar
``Response`` (same OpenAPI, same route-handler plumbing), but when nothing route-level has to
be merged in it encodes the msgspec struct once and sends two prepared ASGI messages with
the headers Litestar would send (content-type, content-length, in that order, after the
answer's own). Anything else (cookies, background tasks, HEAD, route headers) takes
Litestar's path unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from litestar import Response

if TYPE_CHECKING:
    from litestar.connection import Request
    from litestar.types import ASGIApp, Receive, Scope, Send

T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
_JSON = (b"content-type", b"application/json")


class _PreparedAnswer:
    """The ASGI app of a JSONAnswer: both messages are built before it is called."""

    __slots__ = ("_body", "_start")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._start = {"type": "http.response.start", "status": status, "headers": headers}
        self._body = {"type": "http.response.body", "body": body, "more_body": False}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self._start)  # type: ignore[arg-type]
        await send(self._body)  # type: ignore[arg-type]


class JSONAnswer(Response[T]):
    def __init__(
        self, content: T, *, status_code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        # The attributes Litestar's Response.__init__ sets, without its two isinstance checks
        # against typing.Mapping (~1 µs a request); the tests hold the two attribute sets equal.
        self.content = content
        self.background = None
        self.cookies = []
        self.encoding = "utf-8"
        self.headers = dict(headers) if headers else {}
        self.media_type = None
        self.status_code = status_code
        self.response_type_encoders = {**(self.type_encoders or {})}

    def to_asgi_response(  # type: ignore[override]
        self, app: Any, request: Request[Any, Any, Any], **options: Any
    ) -> ASGIApp:
        if (
            app is not None
            or self.cookies
            or self.background is not None
            or self.media_type is not None
            or options.get("cookies")
            or options.get("headers")
            or options.get("background") is not None
            or options.get("is_head_response")
            or options.get("encoded_headers")
        ):
            return super().to_asgi_response(app, request, **options)
        body = _encode(self.content)
        headers = [
            (name.lower().encode("latin-1"), str(value).encode("latin-1"))
            for name, value in self.headers.items()
        ]
        headers.append(_JSON)
        headers.append((b"content-length", b"%d" % len(body)))
        return _PreparedAnswer(self.status_code or options.get("status_code") or 200, headers, body)
