"""The committed OpenAPI file is the app's schema; /schema serves it."""

from __future__ import annotations

import json
from pathlib import Path

from litestar import Litestar
from litestar.testing import AsyncTestClient

from token_api.openapi_export import schema_json

COMMITTED = Path(__file__).resolve().parents[1] / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.exists(), "run `make openapi`"
    assert COMMITTED.read_text() == schema_json(), "openapi.json is stale: run `make openapi`"


def test_errors_are_documented_as_problem_json() -> None:
    schema = json.loads(schema_json())
    responses = schema["paths"]["/v1/sessions"]["post"]["responses"]
    for status in ("400", "401", "409", "413", "422", "429", "503"):
        assert "application/problem+json" in responses[status]["content"], status
    assert "201" in responses


async def test_schema_is_served(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/v1/sessions" in response.json()["paths"]
