"""JSONAnswer sends what Litestar's Response would send for the same answer."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar, Response, post
from litestar.datastructures import Cookie
from litestar.testing import AsyncTestClient

from agentline.lifecycle import DispatchState
from token_api.responses import JSONAnswer
from token_api.schemas import DispatchLink


async def _messages(asgi: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    await asgi({"type": "http"}, receive, send)
    return sent


@pytest.mark.parametrize("headers", [None, {"Idempotent-Replayed": "true"}])
async def test_answer_matches_litestars_response(headers: dict[str, str] | None) -> None:
    url = "/v1/dispatches/dsp_1"
    content = DispatchLink("dsp_1", DispatchState.REQUESTED, url, url + "/events")
    ours = JSONAnswer(content, status_code=201, headers=headers).to_asgi_response(None, None)  # type: ignore[arg-type]
    litestars = Response(content, status_code=201, headers=headers)
    theirs = litestars.to_asgi_response(None, None)  # type: ignore[arg-type]
    assert type(ours).__name__ == "_PreparedAnswer", "the lean path was taken"
    assert await _messages(ours) == await _messages(theirs)
    body = (await _messages(ours))[1]["body"]
    assert msgspec.json.decode(body)["status_url"] == "/v1/dispatches/dsp_1"


async def test_route_level_extras_take_litestars_path() -> None:
    @post("/with-cookie", response_cookies=[Cookie(key="k", value="v")], status_code=201)
    async def with_cookie() -> JSONAnswer[dict[str, str]]:
        return JSONAnswer({"a": "b"}, status_code=201)

    async with AsyncTestClient(app=Litestar([with_cookie])) as client:
        response = await client.post("/with-cookie")
    assert response.status_code == 201
    assert response.json() == {"a": "b"}
    assert response.cookies.get("k") == "v", "the route's cookie was not dropped"


@pytest.mark.parametrize("headers", [None, {"Idempotent-Replayed": "true"}])
def test_answer_holds_what_litestars_response_holds(headers: dict[str, str] | None) -> None:
    """JSONAnswer sets Response's attributes itself: the same names and values (Litestar's
    own path, taken for HEAD, cookies and route extras, reads them)."""
    ours = JSONAnswer({"a": "b"}, status_code=201, headers=headers)
    theirs = Response({"a": "b"}, status_code=201, headers=headers)
    slots = [name for cls in type(theirs).__mro__ for name in getattr(cls, "__slots__", ())]
    assert slots, "Response keeps its state in slots"
    for name in slots:
        assert hasattr(ours, name) == hasattr(theirs, name), name
        if hasattr(theirs, name):
            assert getattr(ours, name) == getattr(theirs, name), name
    assert getattr(ours, "__dict__", {}) == getattr(theirs, "__dict__", {})
