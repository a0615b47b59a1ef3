"""``python -m token_api.openapi_export PATH``: write the app's OpenAPI schema as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agentline.settings import Environment, TokenApiSettings
from token_api.app import create_app


def schema_json() -> str:
    """The schema as committed: stable key order, ending with a newline."""
    # Fixed settings: the schema must not depend on who exports it.
    app = create_app(TokenApiSettings(environment=Environment.DEVELOPMENT))
    return json.dumps(app.openapi_schema.to_schema(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m token_api.openapi_export PATH", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(schema_json())
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
