"""aiohttp application keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# The Emulator serving the application (typed Any to avoid an import cycle).
EMULATOR: web.AppKey[Any] = web.AppKey("emulator", object)
