"""The SFU's announced address (1:1 NAT) in the SDP it sends."""

from __future__ import annotations

from switchboard.sfu import MediaConfig
from switchboard.sfu.ice import announce_address, rtc_configuration

SDP = "\r\n".join(
    [
        "v=0",
        "m=audio 50000 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 10.0.0.5",
        "a=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host",
        "a=candidate:2 1 udp 2130706431 127.0.0.1 50001 typ host",
        "a=candidate:3 1 udp 1694498815 198.51.100.1 50000 typ srflx raddr 10.0.0.5 rport 50000",
        "m=video 50000 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 198.51.100.1",
        "",
    ]
)


def test_host_candidates_and_their_connection_lines_are_announced() -> None:
    out = announce_address(SDP, "203.0.113.7").split("\r\n")
    assert out[2] == "c=IN IP4 203.0.113.7"
    assert out[3] == "a=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host"
    assert out[4] == "a=candidate:2 1 udp 2130706431 203.0.113.7 50001 typ host"
    assert out[5].startswith("a=candidate:3 1 udp 1694498815 198.51.100.1 ")  # srflx kept
    assert out[7] == "c=IN IP4 198.51.100.1"  # not a host candidate's address
    assert out[-1] == ""  # line endings kept


def test_ipv6_announced_address() -> None:
    out = announce_address(SDP, "2001:db8::7")
    assert "c=IN IP6 2001:db8::7" in out
    assert "2001:db8::7 50000 typ host" in out


def test_no_announced_address_is_a_no_op() -> None:
    assert announce_address(SDP, None) is SDP


def test_stun_only_when_configured() -> None:
    assert rtc_configuration(MediaConfig()).iceServers == []
    (server,) = rtc_configuration(MediaConfig(ice_stun_urls=("stun:s:3478",))).iceServers
    assert server.urls == ["stun:s:3478"]
