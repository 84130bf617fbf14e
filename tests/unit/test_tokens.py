"""User access tokens: what mint puts in, and every way verify refuses one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import jwt
import pytest

from switchboard.signalling.identity.tokens import (
    SCOPES,
    TokenError,
    TokenService,
    UserToken,
    derive_signing_key,
)

KEY = bytes(range(32))
NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z
USER = "8:acs:00000000-0000-4000-8000-000000000000_11111111-1111-4111-8111-111111111111"


@pytest.fixture
def service() -> TokenService:
    return TokenService(KEY)


def signing_key() -> bytes:
    return hmac.new(KEY, b"switchboard user access token v1", hashlib.sha256).digest()


def forge(claims: dict, key: bytes | None = None, algorithm: str = "HS256", **headers) -> str:
    """A token with exactly these claims, signed as TokenService would (or not)."""
    return jwt.encode(claims, signing_key() if key is None else key, algorithm, headers or None)


def good_claims(**changes) -> dict:
    claims = {"sub": USER, "scp": ["voip"], "iat": int(NOW), "exp": int(NOW) + 3600, "jti": "a1"}
    claims.update(changes)
    return claims


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_mint_then_verify_round_trips(service: TokenService) -> None:
    token, expires_on = service.mint(USER, ["voip", "chat"], 60, now=NOW)
    assert expires_on == datetime.fromtimestamp(int(NOW) + 3600, UTC)
    assert expires_on.tzinfo is UTC
    verified = service.verify(token, "voip", now=NOW + 1)
    assert verified == UserToken(
        user_id=USER,
        scopes=("voip", "chat"),
        issued_at=int(NOW),
        expires_at=int(NOW) + 3600,
        token_id=verified.token_id,
    )
    assert len(verified.token_id) == 32 and int(verified.token_id, 16) >= 0


def test_now_defaults_to_the_clock(service: TokenService) -> None:
    before = time.time()
    token, expires_on = service.mint(USER, ["voip"], 1)
    verified = service.verify(token, "voip")
    assert before - 1 <= verified.issued_at <= time.time()
    assert expires_on.timestamp() == verified.expires_at == verified.issued_at + 60


def test_claims_are_the_documented_ones(service: TokenService) -> None:
    token, _ = service.mint(USER, ["chat", "voip", "chat"], 1440, now=NOW)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert set(claims) == {"sub", "scp", "iat", "exp", "jti"}
    assert claims["scp"] == ["chat", "voip"]  # duplicates dropped, order kept
    assert claims["exp"] - claims["iat"] == 1440 * 60


def test_signing_key_is_derived_not_the_access_key(service: TokenService) -> None:
    token, _ = service.mint(USER, ["voip"], now=NOW)
    assert derive_signing_key(KEY) == signing_key() != KEY
    jwt.decode(token, signing_key(), algorithms=["HS256"], options={"verify_exp": False})
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, KEY, algorithms=["HS256"], options={"verify_exp": False})


def test_token_ids_are_unique(service: TokenService) -> None:
    ids = {
        service.verify(service.mint(USER, ["voip"], now=NOW)[0], now=NOW).token_id
        for _ in range(20)
    }
    assert len(ids) == 20


def test_repr_hides_the_key(service: TokenService) -> None:
    assert KEY.hex() not in repr(service) and str(KEY) not in repr(service)


@pytest.mark.parametrize(
    ("user_id", "scopes", "minutes"),
    [
        pytest.param(USER, ["voip", "admin"], 60, id="unknown scope"),
        pytest.param(USER, [], 60, id="no scope"),
        pytest.param(USER, "voip", 60, id="scopes as one string"),
        pytest.param(USER, ["voip"], 0, id="0 minutes"),
        pytest.param(USER, ["voip"], 1441, id="1441 minutes"),
        pytest.param(USER, ["voip"], True, id="bool minutes"),
        pytest.param(USER, ["voip"], 60.0, id="float minutes"),
        pytest.param("", ["voip"], 60, id="empty user"),
    ],
)
def test_mint_refuses(service: TokenService, user_id, scopes, minutes) -> None:
    with pytest.raises(ValueError):
        service.mint(user_id, scopes, minutes, now=NOW)


@pytest.mark.parametrize("minutes", [1, 60, 1440])
def test_mint_accepts_1_to_1440_minutes(service: TokenService, minutes: int) -> None:
    token, expires_on = service.mint(USER, sorted(SCOPES), minutes, now=NOW)
    assert service.verify(token, now=NOW).expires_at == int(NOW) + minutes * 60


def test_expiry_is_exact(service: TokenService) -> None:
    token, _ = service.mint(USER, ["voip"], 60, now=NOW)
    exp = int(NOW) + 3600
    assert service.verify(token, now=exp - 0.001).expires_at == exp
    for late in (exp, exp + 1, exp + 86_400):
        with pytest.raises(TokenError) as info:
            service.verify(token, now=late)
        assert info.value.code == "token_expired"


def test_missing_scope(service: TokenService) -> None:
    token, _ = service.mint(USER, ["chat"], 60, now=NOW)
    assert service.verify(token, "chat", now=NOW).scopes == ("chat",)
    with pytest.raises(TokenError) as info:
        service.verify(token, "voip", now=NOW)
    assert info.value.code == "missing_scope"
    assert "voip" in info.value.message


def test_expired_wins_over_missing_scope(service: TokenService) -> None:
    token, _ = service.mint(USER, ["chat"], 60, now=NOW)
    with pytest.raises(TokenError) as info:
        service.verify(token, "voip", now=NOW + 7200)
    assert info.value.code == "token_expired"


def test_required_scope_must_be_known(service: TokenService) -> None:
    token, _ = service.mint(USER, ["voip"], 60, now=NOW)
    with pytest.raises(ValueError):
        service.verify(token, "admin", now=NOW)


def test_unknown_scopes_in_a_genuine_token_are_kept(service: TokenService) -> None:
    # A later version may mint finer scopes ("chat.join"); this one still reads the token.
    token = forge(good_claims(scp=["voip", "chat.join"]))
    assert service.verify(token, "voip", now=NOW).scopes == ("voip", "chat.join")


def test_token_of_another_installation_is_refused(service: TokenService) -> None:
    token, _ = TokenService(bytes(32)).mint(USER, ["voip"], 60, now=NOW)
    with pytest.raises(TokenError) as info:
        service.verify(token, "voip", now=NOW)
    assert info.value.code == "invalid_token"


def test_tampered_signature_is_refused(service: TokenService) -> None:
    token, _ = service.mint(USER, ["voip"], 60, now=NOW)
    signature = token.split(".")[2]
    tampered = token[: -len(signature)] + ("B" if signature[0] == "A" else "A") + signature[1:]
    with pytest.raises(TokenError) as info:
        service.verify(tampered, "voip", now=NOW)
    assert info.value.code == "invalid_token"


def test_tampered_payload_is_refused(service: TokenService) -> None:
    token, _ = service.mint(USER, ["chat"], 60, now=NOW)
    header, _, signature = token.split(".")
    payload = b64url(json.dumps(good_claims(scp=["chat", "voip"])).encode())
    with pytest.raises(TokenError) as info:
        service.verify(f"{header}.{payload}.{signature}", "voip", now=NOW)
    assert info.value.code == "invalid_token"


def test_alg_none_is_refused(service: TokenService) -> None:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(good_claims()).encode())
    for token in (f"{header}.{payload}.", f"{header}.{payload}.{b64url(signing_key())}"):
        with pytest.raises(TokenError) as info:
            service.verify(token, "voip", now=NOW)
        assert info.value.code == "invalid_token"


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # pyjwt on a 32-byte key for HS384/512
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_key(
    service: TokenService, algorithm: str
) -> None:
    with pytest.raises(TokenError) as info:
        service.verify(forge(good_claims(), algorithm=algorithm), now=NOW)
    assert info.value.code == "invalid_token"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({k: v for k, v in good_claims().items() if k != "sub"}, id="no sub"),
        pytest.param({k: v for k, v in good_claims().items() if k != "scp"}, id="no scp"),
        pytest.param({k: v for k, v in good_claims().items() if k != "iat"}, id="no iat"),
        pytest.param({k: v for k, v in good_claims().items() if k != "exp"}, id="no exp"),
        pytest.param({k: v for k, v in good_claims().items() if k != "jti"}, id="no jti"),
        pytest.param(good_claims(sub=""), id="empty sub"),
        pytest.param(good_claims(sub=42), id="int sub"),
        pytest.param(good_claims(scp="voip"), id="scp a string"),
        pytest.param(good_claims(scp=["voip", 1]), id="scp with an int"),
        pytest.param(good_claims(exp=str(int(NOW) + 3600)), id="exp a string"),
        pytest.param(good_claims(exp=NOW + 3600.5), id="exp a float"),
        pytest.param(good_claims(iat=True), id="iat a bool"),
        pytest.param(good_claims(jti=7), id="jti an int"),
        pytest.param(good_claims(exp=int(NOW)), id="exp equal to iat"),
        pytest.param(good_claims(exp=int(NOW) + 1441 * 60), id="lifetime over 1440 minutes"),
    ],
)
def test_ill_formed_claims_are_refused(service: TokenService, claims: dict) -> None:
    with pytest.raises(TokenError) as info:
        service.verify(forge(claims), now=NOW)
    assert info.value.code == "invalid_token"


def test_payload_that_is_not_an_object_is_refused(service: TokenService) -> None:
    token = jwt.PyJWS().encode(b"[1, 2]", signing_key(), algorithm="HS256")
    with pytest.raises(TokenError) as info:
        service.verify(token, now=NOW)
    assert info.value.code == "invalid_token"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="one segment"),
        pytest.param("a.b.c", id="three garbage segments"),
        pytest.param("eyJhbGciOiJIUzI1NiJ9..", id="empty payload and signature"),
        pytest.param("x" * 5000, id="too long"),
        pytest.param(None, id="not a string"),
    ],
)
def test_garbage_is_refused(service: TokenService, token) -> None:
    with pytest.raises(TokenError) as info:
        service.verify(token, now=NOW)
    assert info.value.code == "invalid_token"


def test_error_messages_do_not_contain_the_token(service: TokenService) -> None:
    token, _ = service.mint(USER, ["chat"], 60, now=NOW)
    signature = token.split(".")[2]
    tampered = token[: -len(signature)] + ("B" if signature[0] == "A" else "A") + signature[1:]
    for attempt, now in ((token, NOW + 7200), (token, NOW), (tampered, NOW)):
        with pytest.raises(TokenError) as info:
            service.verify(attempt, "voip", now=now)
        assert signature not in str(info.value)
        assert attempt not in info.value.message


@pytest.mark.parametrize(
    "user_id",
    [
        USER,
        "8:acs:00000000-0000-4000-8000-000000000000_>>??~~\x7f",
        "?~>" * 20,
        "ünïcødé ✓",
    ],
)
def test_payload_segment_has_no_base64url_only_characters(
    service: TokenService, user_id: str
) -> None:
    """The ACS SDKs decode the payload with standard base64: over many tokens (random jti,
    every scope, every offset of the awkward characters), none has '-' or '_' there, and the
    claims read back the same."""
    scopes = sorted(SCOPES)
    for i in range(300):
        token, _ = service.mint(user_id + "~" * (i % 3), scopes[: 1 + i % len(scopes)], now=NOW + i)
        payload = token.split(".")[1]
        assert "-" not in payload and "_" not in payload, payload
        claims = json.loads(base64.b64decode(payload + "=="))  # standard base64, as the SDK
        assert claims["sub"] == user_id + "~" * (i % 3)
        assert service.verify(token, now=NOW + i).user_id == claims["sub"]
