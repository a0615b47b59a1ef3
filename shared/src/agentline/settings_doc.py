"""The README's configuration table, generated from the settings classes so it stays true.

`python -m agentline.settings_doc` prints it; `--write README.md` replaces the table between
the ``<!-- settings:begin -->`` and ``<!-- settings:end -->`` markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import SecretStr

from agentline.settings import (
    AgentWorkerSettings,
    CommonSettings,
    DispatcherSettings,
    TokenApiSettings,
    env_name,
)

BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
SERVICES: list[tuple[str, type[CommonSettings]]] = [
    ("all services", CommonSettings),
    ("token-api", TokenApiSettings),
    ("dispatcher", DispatcherSettings),
    ("agent-worker", AgentWorkerSettings),
]


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        return "(development value)"
    if isinstance(value, list):
        return ",".join(_default(v) for v in value) or "(empty)"
    if value is None or value == "":
        return "(unset)"
    return f"`{getattr(value, 'value', value)}`"


def table() -> str:
    rows = ["| variable | service | default | meaning |", "|---|---|---|---|"]
    common = set(CommonSettings.model_fields)
    for service, cls in SERVICES:
        for name, info in cls.model_fields.items():
            if cls is not CommonSettings and name in common:
                continue
            description = (info.description or "").replace("|", "\\|")
            rows.append(
                f"| `{env_name(cls, name)}` | {service} | {_default(info.default)} | {description} |"
            )
    return "\n".join(rows)


def replace_table(text: str) -> str:
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="file whose table to replace")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(replace_table(args.write.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
