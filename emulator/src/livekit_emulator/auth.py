"""LiveKit access tokens: verification of API tokens and minting of agent tokens.

The real server's order is kept: a token that cannot be verified (unknown key, bad signature,
expired) is answered by the HTTP middleware with a plain-text 401 before Twirp runs; a request
without a token goes on and fails the grant check inside the service (Twirp ``unauthenticated``,
"permissions denied").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import permissions_denied

LEEWAY_S = 60


class AuthFailure(Exception):
    """A token the middleware rejects: HTTP 401 with a plain-text body."""


@dataclass(frozen=True)
class Grants:
    api_key: str = ""
    identity: str = ""
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def video(self) -> dict[str, Any]:
        video = self.claims.get("video")
        return video if isinstance(video, dict) else {}

    def has(self, grant: str) -> bool:
        return bool(self.video.get(grant))

    @property
    def room(self) -> str:
        return str(self.video.get("room") or "")


def verify(authorization: str | None, keys: dict[str, str]) -> Grants | None:
    """The grants of an ``Authorization`` header value, ``None`` when there is no token."""
    if not authorization:
        return None
    if not authorization.startswith("Bearer "):
        raise AuthFailure("invalid authorization header. Must start with Bearer ")
    return verify_token(authorization[len("Bearer ") :], keys)


def verify_token(token: str, keys: dict[str, str]) -> Grants:
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthFailure(f"invalid authorization token: token is malformed: {exc}") from exc
    api_key = str(unverified.get("iss") or "")
    secret = keys.get(api_key)
    if secret is None:
        raise AuthFailure(f"invalid API key: {api_key}")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            leeway=LEEWAY_S,
            options={"verify_aud": False, "verify_iss": False},
        )
    except jwt.InvalidSignatureError as exc:
        raise AuthFailure(
            "invalid authorization token: token signature is invalid: signature is invalid"
        ) from exc
    except jwt.ExpiredSignatureError as exc:
        raise AuthFailure(
            "invalid authorization token: token has invalid claims: token is expired"
        ) from exc
    except jwt.ImmatureSignatureError as exc:
        raise AuthFailure(
            "invalid authorization token: token has invalid claims: token is not valid yet"
        ) from exc
    except jwt.PyJWTError as exc:
        raise AuthFailure(f"invalid authorization token: {exc}") from exc
    return Grants(api_key=api_key, identity=str(claims.get("sub") or ""), claims=claims)


def ensure(grants: Grants | None, grant: str) -> None:
    if grants is None or not grants.has(grant):
        raise permissions_denied()


def ensure_room_admin(grants: Grants | None, room: str) -> None:
    """roomAdmin, and the token's room must be the request's room (as the real server checks)."""
    if grants is None or not grants.has("roomAdmin") or grants.room != room:
        raise permissions_denied()


def build_agent_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    name: str,
    metadata: str,
    attributes: dict[str, str],
    permissions: Any,
    ttl_s: int = 3600,
) -> str:
    """The participant token the server hands a worker in a JobAssignment (claims as recorded
    in worker-protocol/main_worker_golden-agent.json)."""
    now = int(time.time())
    video: dict[str, Any] = {"roomJoin": True}
    if room:
        video["room"] = room
    video["canPublish"] = bool(permissions.can_publish)
    video["canSubscribe"] = bool(permissions.can_subscribe)
    video["canPublishData"] = bool(permissions.can_publish_data)
    if permissions.can_publish_sources:
        video["canPublishSources"] = [_source_name(s) for s in permissions.can_publish_sources]
    video["canUpdateOwnMetadata"] = bool(permissions.can_update_metadata)
    if permissions.hidden:
        video["hidden"] = True
    video["agent"] = True
    video["canSubscribeMetrics"] = bool(permissions.can_subscribe_metrics)
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "exp": now + ttl_s,
        "nbf": now,
        "iat": now,
        "identity": identity,
    }
    if name:
        claims["name"] = name
    if metadata:
        claims["metadata"] = metadata
    claims["kind"] = "agent"
    claims["video"] = video
    if attributes:
        claims["attributes"] = dict(attributes)
    return jwt.encode(claims, api_secret, algorithm="HS256")


def _source_name(source: int) -> str:
    from livekit.protocol import models

    return str(models.TrackSource.Name(source)).lower()


def webhook_token(api_key: str, api_secret: str, sha256_b64: str, ttl_s: int = 300) -> str:
    now = int(time.time())
    claims = {"iss": api_key, "exp": now + ttl_s, "nbf": now, "iat": now, "sha256": sha256_b64}
    return jwt.encode(claims, api_secret, algorithm="HS256")
