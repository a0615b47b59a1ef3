"""RFC 9457 problem details: every error the API answers is ``application/problem+json``.

Handlers raise :class:`Problem`; the exception handlers below also turn Litestar's own errors
(routing, body decoding, validation) and Redis outages into problems, so no error ever leaves
as HTML, plain text or a bare 500.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agentline.logs import get_logger

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://agentline.dev/problems/"
REDIS_RETRY_AFTER_SECONDS = 2

log = get_logger("token_api.problems")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid fields",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class FieldError(msgspec.Struct, frozen=True):
    """One invalid field: where it is and what is wrong with it."""

    field: str
    message: str


class ProblemDetails(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 body, with ``errors`` listing invalid fields."""

    type: str
    title: str
    status: int
    detail: str = ""
    instance: str = ""
    errors: list[FieldError] = []


class Problem(Exception):
    """An error answered as problem+json; ``code`` names its type (``…/problems/<code>``)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.title = title or _TITLES.get(status, "Error")


def invalid(field: str, message: str) -> Problem:
    return Problem(
        422, "invalid-fields", f"{field}: {message}", errors=[FieldError(field, message)]
    )


def problem_response(problem: Problem, instance: str = "") -> Response[bytes]:
    body = ProblemDetails(
        type=PROBLEM_BASE + problem.code,
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        instance=instance,
        errors=problem.errors,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _on_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


_NAMED_FIELD = re.compile(r"^Object (?:contains unknown|missing required) field `([^`]*)`")


def _field_errors(extra: Any) -> list[FieldError]:
    """Litestar/msgspec validation details → field errors (``$.room`` → ``room``)."""
    out: list[FieldError] = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        key = str(item.get("key", ""))
        # msgspec names the offending field in the message: "… - at `$.room`"
        if " - at `$." in message:
            message, _, where = message.partition(" - at `$.")
            key = where.rstrip("`")
        elif (named := _NAMED_FIELD.match(message)) is not None:
            key = named.group(1)
        elif key == "data":
            key = "body"
        out.append(FieldError(key or "body", message))
    return out


def _is_malformed_json(text: str) -> bool:
    """msgspec's words for a body that does not parse (as opposed to one of the wrong shape)."""
    return any(
        marker in text
        for marker in ("JSON is malformed", "Input data was truncated", "trailing characters")
    )


def _on_validation(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, ValidationException)
    errors = _field_errors(exc.extra)
    text = " ".join([str(exc.detail), *(e.message for e in errors)])
    # msgspec reports unparseable JSON as a validation failure of the body: that is a 400.
    if any(e.field == "body" and e.message == "'data'" for e in errors):
        problem = Problem(400, "malformed-json", "The request body is empty: send a JSON object.")
    elif _is_malformed_json(text):
        problem = Problem(400, "malformed-json", "The request body is not valid JSON.")
    elif not errors:
        problem = Problem(400, "bad-request", str(exc.detail))
    else:
        problem = Problem(
            422,
            "invalid-fields",
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            errors=errors,
        )
    return problem_response(problem, request.url.path)


def _on_http(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    detail = str(exc.detail) if exc.detail else _TITLES.get(status, "Error")
    code = {
        400: "bad-request",
        401: "unauthorized",
        404: "not-found",
        405: "method-not-allowed",
        413: "body-too-large",
        415: "unsupported-media-type",
    }.get(status, "http-error")
    if status == 400 and _is_malformed_json(detail):
        code, detail = "malformed-json", "The request body is not valid JSON."
    headers = dict(exc.headers or {})
    return problem_response(Problem(status, code, detail, headers=headers), request.url.path)


def _on_undecodable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    # Litestar lets a body that is not UTF-8 escape as UnicodeDecodeError.
    problem = Problem(400, "malformed-json", "The request body is not valid UTF-8 JSON.")
    return problem_response(problem, request.url.path)


def _on_redis(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.warning("redis unavailable", error=str(exc), path=request.url.path)
    problem = Problem(
        503,
        "redis-unavailable",
        "The dispatch store (Redis) is unreachable; retry shortly.",
        headers={"Retry-After": str(REDIS_RETRY_AFTER_SECONDS)},
    )
    return problem_response(problem, request.url.path)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error", path=request.url.path)
    return problem_response(
        Problem(500, "internal-error", "An unexpected error occurred."), request.url.path
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Problem: _on_problem,
    ValidationException: _on_validation,
    HTTPException: _on_http,
    RedisConnectionError: _on_redis,
    RedisTimeoutError: _on_redis,
    UnicodeDecodeError: _on_undecodable,
    Exception: _on_unexpected,
}

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "FieldError",
    "Problem",
    "ProblemDetails",
    "invalid",
    "problem_response",
]
