"""Command-line parts of NAT traversal: ``serve``'s TURN/STUN/ICE flags, ``switchboard
turn-config`` (a coturn configuration) and ``switchboard check-connectivity`` (the self-test,
in ``switchboard.client.connectivity``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ...sfu.config import MediaConfig
from .coturn import DEFAULT_PORT, DEFAULT_REALM, DEFAULT_TLS_PORT, CoturnSettings, render
from .credentials import DEFAULT_TTL_S, MAX_TTL_S, TraversalConfig, ensure_turn_secret


def port_range(text: str) -> tuple[int, int]:
    """Parse ``MIN-MAX`` (inclusive UDP ports) for argparse."""
    low, sep, high = text.partition("-")
    try:
        ports = (int(low), int(high))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN-MAX, not {text!r}") from None
    if not sep or not 1 <= ports[0] <= ports[1] <= 65535:
        raise argparse.ArgumentTypeError("expected MIN-MAX with 1 <= MIN <= MAX <= 65535")
    return ports


def _ttl(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"TTL must be 1..{MAX_TTL_S} seconds")
    return value


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """``serve``'s NAT traversal flags (``--ice-address`` is ``cli.py``'s)."""
    group = serve.add_argument_group("NAT traversal (docs/operations.md)")
    group.add_argument(
        "--turn-url",
        action="append",
        default=[],
        metavar="URL",
        help="a TURN URI handed to clients with credentials, e.g. "
        "turn:turn.example.com:3478?transport=udp (repeatable; order = preference)",
    )
    group.add_argument(
        "--stun-url",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN URI handed to clients, e.g. stun:turn.example.com:3478 (repeatable)",
    )
    group.add_argument(
        "--turn-ttl",
        type=_ttl,
        default=DEFAULT_TTL_S,
        metavar="S",
        help=f"lifetime of TURN credentials in seconds (default {DEFAULT_TTL_S})",
    )
    group.add_argument(
        "--ice-announced-address",
        metavar="ADDR",
        help="public address written in the SFU's host candidates instead of the local one "
        "(1:1 NAT, cloud VMs); use with --ice-address <private address>",
    )
    group.add_argument(
        "--ice-port-range",
        type=port_range,
        metavar="MIN-MAX",
        help="UDP ports the SFU's ICE sockets bind to (default: any)",
    )
    group.add_argument(
        "--ice-stun-url",
        action="append",
        default=[],
        metavar="URL",
        help="STUN server for the SFU's own server-reflexive candidates (default: none)",
    )


def media_config(args: argparse.Namespace) -> MediaConfig:
    """The media plane's settings from ``serve``'s arguments."""
    return MediaConfig(
        ice_addresses=tuple(args.ice_address),
        ice_announced_address=args.ice_announced_address,
        ice_port_range=args.ice_port_range,
        ice_stun_urls=tuple(args.ice_stun_url),
    )


def traversal_config(args: argparse.Namespace) -> TraversalConfig:
    """The TURN/STUN settings from ``serve``'s arguments; reads (or creates) the secret."""
    return TraversalConfig(
        turn_urls=tuple(args.turn_url),
        stun_urls=tuple(args.stun_url),
        turn_secret=ensure_turn_secret(args.data_dir),
        ttl_s=args.turn_ttl,
    )


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``turn-config`` and ``check-connectivity``."""
    conf = sub.add_parser("turn-config", help="write a coturn configuration for this server")
    conf.add_argument("--data-dir", type=Path, default=Path("data"), help="default ./data")
    conf.add_argument("--out", default="-", help="file to write (mode 0600; default - for stdout)")
    conf.add_argument("--realm", default=DEFAULT_REALM)
    conf.add_argument(
        "--listening-ip", action="append", default=[], metavar="ADDR", help="default: all"
    )
    conf.add_argument("--port", type=int, default=DEFAULT_PORT, help="UDP and TCP (3478)")
    conf.add_argument("--tls-port", type=int, default=DEFAULT_TLS_PORT, help="TLS (5349)")
    conf.add_argument("--cert", help="TLS certificate chain (PEM) for turns:")
    conf.add_argument("--pkey", help="its private key (PEM)")
    conf.add_argument(
        "--relay-ip",
        metavar="ADDR",
        help="address relay sockets bind to (default: coturn picks; a loopback "
        "--sfu-address when every --sfu-address is loopback)",
    )
    conf.add_argument("--external-ip", metavar="ADDR", help="coturn's public address (1:1 NAT)")
    conf.add_argument(
        "--relay-ports",
        type=port_range,
        default=None,
        metavar="MIN-MAX",
        help="UDP ports for relayed addresses (default 49152-65535)",
    )
    conf.add_argument(
        "--sfu-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="the SFU's ICE address: the only private/loopback peer the relay may reach "
        "(repeatable)",
    )
    conf.add_argument(
        "--tcp-relay", action="store_true", help="allow RFC 6062 TCP relays (WebRTC needs none)"
    )
    conf.add_argument("--log-file", default="stdout")
    conf.add_argument("--pidfile")
    conf.set_defaults(run=turn_config)

    check = sub.add_parser(
        "check-connectivity",
        help="report whether media reaches a server by UDP, TURN/UDP, TURN/TCP, TURN/TLS",
    )
    check.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    auth = check.add_mutually_exclusive_group()
    auth.add_argument("--token", help="user access token with the voip scope")
    auth.add_argument("--data-dir", type=Path, help="the server's data directory: mint a token")
    check.add_argument("--json", action="store_true", help="print JSON for machines")
    check.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="per check (default 10 s)"
    )
    check.add_argument("--turn-ca", metavar="PEM", help="CA file to verify turns: servers with")
    check.add_argument(
        "--ca-file",
        metavar="PEM",
        help="CA file to verify an https:// server with, e.g. data/tls/cert.pem of "
        "`serve --tls self-signed` (default: the system's, or $SSL_CERT_FILE)",
    )
    check.add_argument(
        "--ice-address", action="append", default=None, help="local address for ICE (repeatable)"
    )
    check.set_defaults(run=_check_connectivity)


def turn_config(args: argparse.Namespace) -> int:
    """Write the coturn configuration; the secret is created in the data dir if missing."""
    args.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = ensure_turn_secret(args.data_dir)
    settings = CoturnSettings(
        realm=args.realm,
        listening_ips=tuple(args.listening_ip),
        port=args.port,
        tls_port=args.tls_port,
        cert=str(Path(args.cert).resolve()) if args.cert else None,  # coturn's cwd differs
        pkey=str(Path(args.pkey).resolve()) if args.pkey else None,
        relay_ip=args.relay_ip,
        external_ip=args.external_ip,
        sfu_addresses=tuple(args.sfu_address),
        tcp_relay=args.tcp_relay,
        log_file=args.log_file,
        pidfile=args.pidfile,
        **({"relay_ports": args.relay_ports} if args.relay_ports else {}),
    )
    try:
        text = render(settings, secret)
    except ValueError as exc:
        print(f"switchboard turn-config: {exc}", file=sys.stderr)
        return 2
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _check_connectivity(args: argparse.Namespace) -> int:
    from ...client.connectivity import run

    return run(args)
