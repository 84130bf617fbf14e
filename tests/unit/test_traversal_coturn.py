"""``switchboard turn-config``: the coturn configuration it writes."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from switchboard.signalling.cli import main
from switchboard.signalling.traversal.cli import port_range
from switchboard.signalling.traversal.coturn import CoturnSettings, render
from switchboard.signalling.traversal.credentials import ensure_turn_secret


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_production_config_denies_private_ranges_but_the_sfu() -> None:
    text = render(
        CoturnSettings(sfu_addresses=("10.0.0.5",), cert="/c.pem", pkey="/k.pem"), "s3cret"
    )
    lines = _lines(text)
    for expected in (
        "use-auth-secret",
        "static-auth-secret=s3cret",
        "realm=switchboard",
        "listening-port=3478",
        "tls-listening-port=5349",
        "cert=/c.pem",
        "no-tcp-relay",
        "no-multicast-peers",
        "allowed-peer-ip=10.0.0.5",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=172.16.0.0-172.31.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "min-port=49152",
        "max-port=65535",
    ):
        assert expected in lines, expected
    assert "allow-loopback-peers" not in lines
    assert "no-tls" not in lines


def test_loopback_sfu_allows_loopback_peers_and_only_that_address() -> None:
    lines = _lines(render(CoturnSettings(sfu_addresses=("127.0.0.1",)), "s"))
    assert "allow-loopback-peers" in lines
    assert "allowed-peer-ip=127.0.0.1" in lines
    assert "denied-peer-ip=127.0.0.0-127.255.255.255" in lines  # the rest of 127/8
    assert "no-tls" in lines and "no-dtls" in lines  # no certificate given


def test_tcp_relay_and_ranges() -> None:
    settings = CoturnSettings(tcp_relay=True, relay_ports=(50000, 50100), listening_ips=("::1",))
    lines = _lines(render(settings, "s"))
    assert "no-tcp-relay" not in lines
    assert {"min-port=50000", "max-port=50100", "listening-ip=::1"} <= set(lines)


@pytest.mark.parametrize(
    ("settings", "secret"),
    [
        pytest.param(CoturnSettings(sfu_addresses=("sfu.example.com",)), "s", id="a name"),
        pytest.param(CoturnSettings(port=70000), "s", id="a bad port"),
        pytest.param(CoturnSettings(), "", id="no secret"),
        pytest.param(CoturnSettings(), "a\nb", id="two lines"),
    ],
)
def test_render_refuses(settings: CoturnSettings, secret: str) -> None:
    with pytest.raises(ValueError):
        render(settings, secret)


def test_command_writes_a_private_file_with_the_servers_secret(tmp_path: Path) -> None:
    out = tmp_path / "turnserver.conf"
    status = main(
        ["turn-config", "--data-dir", str(tmp_path / "d"), "--out", str(out),
         "--sfu-address", "127.0.0.1", "--relay-ports", "50000-50009", "--port", "3479"]
    )  # fmt: skip
    assert status == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    secret = ensure_turn_secret(tmp_path / "d")
    lines = _lines(out.read_text())
    assert f"static-auth-secret={secret}" in lines
    assert {"listening-port=3479", "min-port=50000", "max-port=50009"} <= set(lines)


def test_command_refuses_a_bad_address(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["turn-config", "--data-dir", str(tmp_path), "--sfu-address", "nope"]) == 2
    assert "does not appear to be an IPv4 or IPv6 address" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("40000-40010", (40000, 40010)), ("5-5", (5, 5))],
)
def test_port_range(text: str, expected: tuple[int, int]) -> None:
    assert port_range(text) == expected


@pytest.mark.parametrize("text", ["40000", "10-5", "0-10", "a-b", "1-70000"])
def test_port_range_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        port_range(text)
