"""The SFU's side of ICE (RFC 8445): its peer connections' configuration and the candidates it
announces.

* ``rtc_configuration``: max-bundle, and STUN servers only when configured, for server-reflexive
  candidates (RFC 8445 §5.1.1.2; off by default: a server normally has a public or announced
  address, and a STUN round trip slows every answer).
* ``announce_address``: 1:1 NAT, as on cloud VMs whose public address is not on any
  interface: every host candidate (RFC 8839 §5.1) the SFU writes in its SDP gets the public
  address instead of the local one, ports unchanged; the NAT maps the public address and port
  back to the local ones. mediasoup's ``announcedAddress`` does the same.
"""

from __future__ import annotations

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from .config import MediaConfig


def rtc_configuration(config: MediaConfig) -> RTCConfiguration:
    """The RTCConfiguration of every peer connection the SFU makes."""
    servers = [RTCIceServer(urls=list(config.ice_stun_urls))] if config.ice_stun_urls else []
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def announce_address(sdp: str, address: str | None) -> str:
    """Return ``sdp`` with the address of every host candidate, and of every ``c=`` line that
    names one of them (aiortc writes the default candidate's address there, RFC 8839 §4.2.1.2),
    replaced by ``address``. ``None`` returns ``sdp`` unchanged. Line endings are kept."""
    if not address:
        return sdp
    eol = "\r\n" if "\r\n" in sdp else "\n"
    lines = sdp.split(eol)
    replaced: set[str] = set()
    family = "IP6" if ":" in address else "IP4"
    for i, line in enumerate(lines):
        if line.startswith("a=candidate:"):
            # a=candidate:<foundation> <component> <transport> <priority> <addr> <port> typ <type>
            fields = line.split(" ")
            if len(fields) >= 8 and fields[6] == "typ" and fields[7] == "host":
                replaced.add(fields[4])
                fields[4] = address
                lines[i] = " ".join(fields)
    for i, line in enumerate(lines):
        if line.startswith("c=IN "):
            fields = line.split(" ")
            if len(fields) == 3 and fields[2] in replaced:
                lines[i] = f"c=IN {family} {address}"
    return eol.join(lines)
