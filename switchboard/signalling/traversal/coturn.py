"""A coturn configuration that matches Switchboard's TURN settings (``switchboard turn-config``).

coturn (https://github.com/coturn/coturn) is the TURN server (RFC 8656) Switchboard hands out
credentials for; it checks them with the TURN REST API scheme (``use-auth-secret``,
draft-uberti-behave-turn-rest §2.2) against the secret in ``<data dir>/turn.secret``.

Who the relay may reach is the security-critical part: an open relay lets anyone on the
internet send packets from the TURN host into its private network. The file denies every
private, loopback, link-local and reserved range (``denied-peer-ip``) and allows back only
the SFU's own addresses (``allowed-peer-ip``, which coturn checks first), so the relay can
reach the SFU and public addresses, nothing else. A loopback SFU address (all-in-one hosts,
tests) needs ``allow-loopback-peers`` as well, since coturn refuses loopback peers before it
looks at either list; the rest of 127/8 stays denied. When every SFU address is loopback
and no ``relay_ip`` is given, relay sockets bind to that loopback address: the relay only has
to reach the SFU, and on a host whose only interface is loopback coturn finds no relay
address by itself ("Cannot configure any meaningful IP listener address").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DEFAULT_REALM = "switchboard"
DEFAULT_PORT = 3478  # RFC 8656 §4: TURN over UDP and TCP
DEFAULT_TLS_PORT = 5349  # RFC 8656 §4: TURN over TLS (operators often use 443)
DEFAULT_RELAY_PORTS = (49152, 65535)  # coturn's default relay range

# Peers the relay must not reach (RFC 6890 special-purpose registries): private (RFC 1918),
# shared CGNAT (RFC 6598), loopback, link-local, "this network", IETF protocol assignments,
# benchmarking (RFC 2544), multicast and reserved; IPv6 loopback, unspecified, ULA (RFC 4193),
# link-local, IPv4-mapped and NAT64 (which would reach the IPv4 ones).
DENIED_PEER_NETWORKS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/127",
    "64:ff9b::/96",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
)


@dataclass(frozen=True)
class CoturnSettings:
    """What ``render`` writes. Ports are TCP/UDP port numbers; ``relay_ports`` is inclusive.

    ``listening_ips``: addresses coturn listens on (empty: all). ``relay_ip``: the address relay
    sockets bind to (None: coturn picks). ``external_ip``: coturn's public address when it sits
    behind 1:1 NAT. ``tls_port`` 0, or no ``cert``/``pkey``, turns TLS and DTLS off.
    ``sfu_addresses``: the SFU's ICE addresses, the only private peers allowed. ``tcp_relay``:
    allow TCP allocations (RFC 6062); WebRTC never asks for them, so off by default.
    """

    realm: str = DEFAULT_REALM
    listening_ips: tuple[str, ...] = ()
    port: int = DEFAULT_PORT
    tls_port: int = DEFAULT_TLS_PORT
    cert: str | None = None
    pkey: str | None = None
    relay_ip: str | None = None
    external_ip: str | None = None
    relay_ports: tuple[int, int] = DEFAULT_RELAY_PORTS
    sfu_addresses: tuple[str, ...] = ()
    tcp_relay: bool = False
    log_file: str = "stdout"
    pidfile: str | None = None
    extra: tuple[str, ...] = field(default=())


def _range(network: str) -> str:
    net = ipaddress.ip_network(network)
    return f"{net.network_address}-{net.broadcast_address}"


def render(settings: CoturnSettings, secret: str) -> str:
    """The text of a ``turnserver.conf`` for ``settings`` and the shared ``secret``.

    Raises ValueError for an address that is not an IP literal or an invalid port."""
    for address in (*settings.listening_ips, *settings.sfu_addresses):
        ipaddress.ip_address(address)
    for port in (settings.port, settings.tls_port, *settings.relay_ports):
        if not 0 <= port <= 65535:
            raise ValueError(f"invalid port {port}")
    if not secret or "\n" in secret:
        raise ValueError("the TURN secret must be one non-empty line")
    tls = bool(settings.tls_port and settings.cert and settings.pkey)
    lines = [
        "# coturn configuration written by `switchboard turn-config`; it holds the TURN shared",
        "# secret: keep it private (mode 0600). Run: turnserver -c <this file>",
        "fingerprint",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        f"realm={settings.realm}",
        *(f"listening-ip={ip}" for ip in settings.listening_ips),
        f"listening-port={settings.port}",
    ]
    if tls:
        lines += [
            f"tls-listening-port={settings.tls_port}",
            f"cert={settings.cert}",
            f"pkey={settings.pkey}",
            "no-tlsv1",
            "no-tlsv1_1",
        ]
    else:
        lines += ["no-tls", "no-dtls"]
    relay_ip = settings.relay_ip
    loopback_sfu = [a for a in settings.sfu_addresses if ipaddress.ip_address(a).is_loopback]
    if relay_ip is None and loopback_sfu and len(loopback_sfu) == len(settings.sfu_addresses):
        relay_ip = loopback_sfu[0]  # the relay reaches only the SFU, over loopback
    if relay_ip:
        lines.append(f"relay-ip={relay_ip}")
    if settings.external_ip:
        lines.append(f"external-ip={settings.external_ip}")
    lines += [
        f"min-port={settings.relay_ports[0]}",
        f"max-port={settings.relay_ports[1]}",
        "no-multicast-peers",
        "no-cli",
        "no-rfc5780",
        "no-software-attribute",
        "stale-nonce=600",
    ]
    if not settings.tcp_relay:
        lines.append("no-tcp-relay")
    if any(ipaddress.ip_address(a).is_loopback for a in settings.sfu_addresses):
        lines.append("allow-loopback-peers")
    lines += [f"allowed-peer-ip={a}" for a in settings.sfu_addresses]
    lines += [f"denied-peer-ip={_range(n)}" for n in DENIED_PEER_NETWORKS]
    lines += [f"log-file={settings.log_file}", "simple-log"]
    if settings.pidfile:
        lines.append(f"pidfile={settings.pidfile}")
    lines += list(settings.extra)
    return "\n".join(lines) + "\n"
