"""LiveKit access tokens: verification of API tokens and minting of agent tokens.

The real server's order is kept: a token that cannot be verified (unknown key, bad signature,
expired) is answered by the HTTP middleware with a plain-text 401 before Twirp runs; a request
without a token goes on and fails the grant check inside the service (Twirp ``unauthenticated``,
"permissions denied").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

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


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_HS256_HEADER = _b64encode(b'{"alg":"HS256","typ":"JWT"}')


def encode_hs256(claims: dict[str, Any], secret: str) -> str:
    """An HS256 JWT (what pyjwt writes, without its overhead on the hot paths)."""
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{_HS256_HEADER}.{payload}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64encode(signature)}"


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, signature not checked (for the holder of a token we minted)."""
    claims = json.loads(_b64decode(token.split(".")[1]))
    if not isinstance(claims, dict):
        raise ValueError("JWT claims are not an object")
    return claims


def verify_token(token: str, keys: dict[str, str]) -> Grants:
    """Verify an HS256 token against the secret of its issuer (``iss`` = API key), with the
    real server's error texts."""
    try:
        header_seg, payload_seg, signature_seg = token.split(".")
        header = json.loads(_b64decode(header_seg))
        claims = json.loads(_b64decode(payload_seg))
        signature = _b64decode(signature_seg)
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not a JSON object")
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise AuthFailure(f"invalid authorization token: token is malformed: {exc}") from exc
    api_key = str(claims.get("iss") or "")
    secret = keys.get(api_key)
    if secret is None:
        raise AuthFailure(f"invalid API key: {api_key}")
    if header.get("alg") != "HS256":
        raise AuthFailure(
            "invalid authorization token: token is unverifiable: signing method "
            f"{header.get('alg')} is invalid"
        )
    expected = hmac.new(
        secret.encode(), f"{header_seg}.{payload_seg}".encode(), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise AuthFailure(
            "invalid authorization token: token signature is invalid: signature is invalid"
        )
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if isinstance(exp, int | float) and now > exp + LEEWAY_S:
        raise AuthFailure("invalid authorization token: token has invalid claims: token is expired")
    if isinstance(nbf, int | float) and now < nbf - LEEWAY_S:
        raise AuthFailure(
            "invalid authorization token: token has invalid claims: token is not valid yet"
        )
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
    return encode_hs256(claims, api_secret)


def _source_name(source: int) -> str:
    from livekit.protocol import models

    return str(models.TrackSource.Name(source)).lower()


def webhook_token(api_key: str, api_secret: str, sha256_b64: str, ttl_s: int = 300) -> str:
    now = int(time.time())
    claims = {"iss": api_key, "exp": now + ttl_s, "nbf": now, "iat": now, "sha256": sha256_b64}
    return encode_hs256(claims, api_secret)
