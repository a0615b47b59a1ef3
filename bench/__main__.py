"""Run every benchmark (or those named on the command line) and print a summary.

Each module in this package with a ``run()`` (sync or async) is one benchmark; it prints its
figures and writes ``bench/results/<name>.json``. A benchmark that fails is reported as
failed, and the command exits non-zero, so a missing figure is never silent.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import sys
import traceback

ORDER = ["streams", "token_api", "dispatcher", "agent_worker", "admission", "e2e"]


def main(argv: list[str]) -> int:
    names = argv or ORDER
    failed: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"bench.{name}" and not argv:
                continue  # not written yet
            raise
        print(f"\n### bench.{name}", flush=True)
        try:
            result = module.run()
            if inspect.isawaitable(result):
                asyncio.run(result)  # type: ignore[arg-type]
        except Exception:
            traceback.print_exc()
            failed.append(name)
    if failed:
        print(f"\nbenchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
