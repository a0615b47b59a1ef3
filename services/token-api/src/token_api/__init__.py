"""agentline token-api: the frontend's HTTP API (sessions, tokens, dispatch status, events)."""

__version__ = "0.1.0"
