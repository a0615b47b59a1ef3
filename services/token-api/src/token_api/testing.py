"""Helpers for tests and benchmarks of token-api (credentials that are never real)."""

from __future__ import annotations

API_KEY = "test-key-0123456789"
OTHER_API_KEY = "test-key-other-9876543210"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
LIVEKIT_KEY = "test-livekit-key"
LIVEKIT_SECRET = "test-livekit-secret-0123456789abcdef0123"
