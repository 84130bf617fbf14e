"""TURN REST API credentials (draft-uberti-behave-turn-rest §2.2) and the TURN secret file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from switchboard.signalling.traversal.credentials import (
    TURN_SECRET_FILE,
    TraversalConfig,
    ensure_turn_secret,
    ice_servers,
    turn_credential,
)


def test_credential_matches_a_vector_computed_by_openssl() -> None:
    # printf '%s' "1700000060:8:acs:alice" | openssl dgst -sha1 -hmac north -binary | base64
    cred = turn_credential("north", "8:acs:alice", ttl_s=60, now=1_700_000_000.9)
    assert cred.username == "1700000060:8:acs:alice"
    assert cred.credential == "tDPFejJYWu08Iz3Mc9j9+/I3C1o="
    assert cred.expires_at == 1_700_000_060
    assert "tDPF" not in repr(cred)


@pytest.mark.parametrize(("secret", "ttl"), [("", 60), ("s", 0), ("s", -5)])
def test_credential_refuses_bad_settings(secret: str, ttl: int) -> None:
    with pytest.raises(ValueError):
        turn_credential(secret, "u", ttl)


def test_ice_servers_one_entry_per_turn_url_sharing_one_credential() -> None:
    config = TraversalConfig(
        turn_urls=("turn:t:3478?transport=udp", "turns:t:443?transport=tcp"),
        stun_urls=("stun:t:3478",),
        turn_secret="north",
        ttl_s=600,
    )
    servers, expires_at = ice_servers(config, "u1", now=1000)
    assert expires_at == 1600
    assert servers[0] == {"urls": ["stun:t:3478"]}
    assert [s["urls"] for s in servers[1:]] == [
        ["turn:t:3478?transport=udp"],
        ["turns:t:443?transport=tcp"],
    ]
    assert {s["username"] for s in servers[1:]} == {"1600:u1"}
    assert len({s["credential"] for s in servers[1:]}) == 1


def test_ice_servers_without_relay() -> None:
    assert ice_servers(TraversalConfig(), "u") == ([], None)
    no_secret = TraversalConfig(turn_urls=("turn:t",), stun_urls=("stun:t",))
    assert ice_servers(no_secret, "u") == ([{"urls": ["stun:t"]}], None)


def test_config_repr_hides_the_secret() -> None:
    assert "north" not in repr(TraversalConfig(turn_secret="north"))


def test_secret_file_is_private_and_stable(tmp_path: Path) -> None:
    first = ensure_turn_secret(tmp_path)
    path = tmp_path / TURN_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 40 and first.isascii() and "\n" not in first
    assert ensure_turn_secret(tmp_path) == first
    assert [p.name for p in tmp_path.iterdir()] == [TURN_SECRET_FILE]  # no temporary left


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / TURN_SECRET_FILE).write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        ensure_turn_secret(tmp_path)
