"""The precomputed HS256 minter produces what livekit-api's AccessToken produces."""

from __future__ import annotations

import datetime
import time

import jwt
import pytest
from livekit.api import AccessToken, TokenVerifier, VideoGrants

from token_api.tokens import TokenMinter

KEY, SECRET = "APIkey123", "a-livekit-secret-of-enough-length-0123456789"


def _reference(identity: str, room: str, name: str, metadata: str, ttl: int) -> str:
    token = (
        AccessToken(KEY, SECRET)
        .with_identity(identity)
        .with_grants(VideoGrants(room_join=True, room=room))
        .with_ttl(datetime.timedelta(seconds=ttl))
    )
    if name:
        token = token.with_name(name)
    if metadata:
        token = token.with_metadata(metadata)
    return token.to_jwt()


@pytest.mark.parametrize(
    ("name", "metadata"), [("", ""), ("Ada Lovelace", ""), ("Zoë", '{"lang":"fr","n":[1,2]}')]
)
def test_claims_match_access_token(name: str, metadata: str) -> None:
    minted = TokenMinter(KEY, SECRET).mint(
        room="travel-room-1", identity="user-1", ttl_seconds=900, name=name, metadata=metadata
    )
    reference = _reference("user-1", "travel-room-1", name, metadata, 900)
    verifier = TokenVerifier(KEY, SECRET)
    assert verifier.verify(minted.jwt) == verifier.verify(reference)

    ours = jwt.decode(minted.jwt, SECRET, algorithms=["HS256"], issuer=KEY)
    theirs = jwt.decode(reference, SECRET, algorithms=["HS256"], issuer=KEY)
    for claims in (ours, theirs):
        claims.pop("nbf"), claims.pop("exp")
    assert ours == theirs
    assert jwt.get_unverified_header(minted.jwt) == {"alg": "HS256", "typ": "JWT"}


def test_expiry_and_not_before() -> None:
    before = int(time.time())
    minted = TokenMinter(KEY, SECRET).mint(room="r", identity="u", ttl_seconds=120)
    claims = jwt.decode(minted.jwt, SECRET, algorithms=["HS256"], issuer=KEY)
    assert before <= claims["nbf"] <= before + 2
    assert claims["exp"] == claims["nbf"] + 120 == minted.expires_at


def test_wrong_secret_is_refused() -> None:
    minted = TokenMinter(KEY, SECRET).mint(room="r", identity="u", ttl_seconds=120)
    with pytest.raises(jwt.InvalidSignatureError):
        TokenVerifier(KEY, "another-secret-of-enough-length-0123456789").verify(minted.jwt)


def test_grant_is_for_that_room_only() -> None:
    minted = TokenMinter(KEY, SECRET).mint(room="only-this", identity="u", ttl_seconds=120)
    video = TokenVerifier(KEY, SECRET).verify(minted.jwt).video
    assert video is not None
    assert video.room == "only-this" and video.room_join
    assert not any((video.room_admin, video.room_create, video.room_list, video.room_record))


def test_minting_needs_credentials() -> None:
    with pytest.raises(ValueError):
        TokenMinter("", SECRET)
