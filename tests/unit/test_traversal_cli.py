"""``serve``'s NAT traversal flags and the self-test's pure parts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from switchboard.client.connectivity import Check, format_table, turn_url_for
from switchboard.signalling.cli import _build_parser
from switchboard.signalling.traversal.cli import media_config, traversal_config


def test_serve_flags_build_the_configs(tmp_path: Path) -> None:
    args, rest = _build_parser().parse_known_args(
        ["serve", "--data-dir", str(tmp_path), "--ice-address", "10.0.0.5",
         "--ice-announced-address", "203.0.113.7", "--ice-port-range", "40000-40099",
         "--ice-stun-url", "stun:s:3478", "--turn-url", "turn:t:3478?transport=udp",
         "--turn-url", "turns:t:443?transport=tcp", "--stun-url", "stun:t:3478",
         "--turn-ttl", "7200"]
    )  # fmt: skip
    assert rest == []
    media = media_config(args)
    assert media.ice_addresses == ("10.0.0.5",)
    assert media.ice_announced_address == "203.0.113.7"
    assert media.ice_port_range == (40000, 40099)
    assert media.ice_stun_urls == ("stun:s:3478",)
    traversal = traversal_config(args)
    assert traversal.turn_urls == ("turn:t:3478?transport=udp", "turns:t:443?transport=tcp")
    assert traversal.stun_urls == ("stun:t:3478",) and traversal.ttl_s == 7200
    assert traversal.relay_enabled
    assert stat.S_IMODE((tmp_path / "turn.secret").stat().st_mode) == 0o600


def test_serve_defaults(tmp_path: Path) -> None:
    args, _ = _build_parser().parse_known_args(["serve", "--data-dir", str(tmp_path)])
    media = media_config(args)
    assert (media.ice_announced_address, media.ice_port_range, media.ice_stun_urls) == (
        None,
        None,
        (),
    )
    assert not traversal_config(args).relay_enabled


@pytest.mark.parametrize("flag", [["--turn-ttl", "0"], ["--ice-port-range", "9-1"]])
def test_serve_refuses_bad_values(flag: list[str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        _build_parser().parse_known_args(["serve", *flag])


SERVERS = [
    {"urls": ["stun:t:3478"]},
    {"urls": ["turn:t:3478"], "username": "u", "credential": "c"},
    {"urls": "turn:t:3478?transport=tcp", "username": "u", "credential": "c"},
    {"urls": ["turns:t:443?transport=tcp"], "username": "u", "credential": "c"},
]


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("turn-udp", "turn:t:3478"),
        ("turn-tcp", "turn:t:3478?transport=tcp"),
        ("turn-tls", "turns:t:443?transport=tcp"),
    ],
)
def test_turn_url_for(path: str, url: str) -> None:
    found = turn_url_for(path, SERVERS)
    assert found is not None and found[0] == url and found[1]["username"] == "u"


def test_turn_url_for_missing() -> None:
    assert turn_url_for("turn-tls", SERVERS[:2]) is None
    assert turn_url_for("udp", SERVERS) is None


def test_format_table() -> None:
    table = format_table([Check("udp", True, 0.5), Check("turn-tls", False, None, "refused")])
    assert table.splitlines() == ["udp       ok        0.50 ms", "turn-tls  FAIL  refused"]
