"""The connectivity self-test: can media reach a Switchboard server by direct UDP, through
TURN over UDP, over TCP and over TLS (RFC 8656 §3.1), and with what round-trip time?

``switchboard check-connectivity --url URL [--json]`` and ``check(url, token)``. For each path
the test makes one aiortc peer connection with a data channel, forced onto that path: "udp"
with no ICE servers (host candidates, RFC 8445 §5.1.1.1), the TURN paths with
``iceTransportPolicy: "relay"`` and one TURN URL only (relayed candidates, RFC 8656). The server
answers on ``POST /v1/connectivity/probe`` with a short-lived peer that gathers exactly as its
call transports do and echoes every message. RTT is the median of ``PINGS`` echoes, in
milliseconds, measured on the data channel (SCTP over DTLS, RFC 8831), so it includes the
relay's hop both ways. The TURN credentials come from
``POST /networkTraversal/:issueRelayConfiguration`` with the same user access token.

JSON: ``{"checks": [{"path": "udp"|"turn-udp"|"turn-tcp"|"turn-tls", "ok": bool,
"rtt_ms": float|null, "error": str|null}]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)

from ..sfu import aiortc_glue

PATHS = ("udp", "turn-udp", "turn-tcp", "turn-tls")
PINGS = 5
DEFAULT_TIMEOUT_S = 10.0


@dataclass
class Check:
    """One path's result: ``rtt_ms`` is the median echo round trip in milliseconds."""

    path: str
    ok: bool
    rtt_ms: float | None = None
    error: str | None = None


def turn_url_for(path: str, ice_servers: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The first URL (RFC 7065) among ``ice_servers`` that forces ``path``, with its server:
    ``turn:…`` with no or ``udp`` transport for turn-udp, ``turn:…?transport=tcp`` for
    turn-tcp, ``turns:…`` for turn-tls."""
    for server in ice_servers:
        urls = server.get("urls", [])
        for url in [urls] if isinstance(urls, str) else urls:
            scheme, _, rest = url.partition(":")
            transport = rest.partition("?transport=")[2].lower() or "udp"
            kind = {
                ("turn", "udp"): "turn-udp",
                ("turn", "tcp"): "turn-tcp",
                ("turns", "tcp"): "turn-tls",
                ("turns", "udp"): "turn-tls",
            }.get((scheme.lower(), transport))
            if kind == path:
                return url, server
    return None


async def _probe(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    config: RTCConfiguration,
    relay: bool,
    timeout_s: float,
) -> float:
    """Run one echo probe; return the median RTT in ms. Raises RuntimeError with the reason."""
    pc = RTCPeerConnection(config)
    try:
        channel = pc.createDataChannel("echo")
        opened = asyncio.Event()
        replies: asyncio.Queue[str] = asyncio.Queue()
        channel.on("open", opened.set)
        channel.on("message", lambda m: replies.put_nowait(m if isinstance(m, str) else ""))
        aiortc_glue.last_turn_error(clear=True)
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        if relay and " typ relay" not in offer:
            why = aiortc_glue.last_turn_error() or "the TURN server did not answer"
            raise RuntimeError(f"no relay allocated: {why}")
        async with session.post(
            f"{base}/v1/connectivity/probe",
            json={"sdp": offer},
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                error = body.get("error", {}) if isinstance(body, dict) else {}
                raise RuntimeError(f"probe refused: {response.status} {error.get('message')}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="answer"))
        try:
            await asyncio.wait_for(opened.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"no connectivity within {timeout_s:g} s (ICE {pc.iceConnectionState})"
            ) from None
        rtts = []
        for i in range(PINGS):
            sent = time.perf_counter()
            channel.send(f"ping {i}")
            while await asyncio.wait_for(replies.get(), timeout_s) != f"ping {i}":
                pass
            rtts.append((time.perf_counter() - sent) * 1000)
        return round(statistics.median(rtts), 2)
    finally:
        await pc.close()


async def check(
    url: str,
    token: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    paths: tuple[str, ...] = PATHS,
    ssl_context: Any = True,
) -> list[Check]:
    """Run the self-test against the server at ``url`` with a ``voip`` user access token."""
    base = url.rstrip("/")
    results: list[Check] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ssl_context),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
    ) as session:
        relay_error: str | None = None
        servers: list[dict[str, Any]] = []
        try:
            async with session.post(
                f"{base}/networkTraversal/:issueRelayConfiguration",
                json={},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                body = await response.json(content_type=None)
                if response.status == 200:
                    servers = body["iceServers"]
                else:
                    relay_error = f"no relay configuration: {body['error']['message']}"
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            relay_error = f"no relay configuration: {exc or type(exc).__name__}"
        for path in paths:
            if path == "udp":
                config = RTCConfiguration(iceServers=[])
            else:
                found = turn_url_for(path, servers)
                if found is None:
                    error = relay_error or f"the server hands out no {path} URL"
                    results.append(Check(path, False, None, error))
                    continue
                turn_url, server = found
                config = RTCConfiguration(
                    iceServers=[
                        RTCIceServer(turn_url, server.get("username"), server.get("credential"))
                    ],
                    iceTransportPolicy=RTCIceTransportPolicy.RELAY,
                )
            try:
                rtt = await _probe(session, base, token, config, path != "udp", timeout_s)
                results.append(Check(path, True, rtt, None))
            except (RuntimeError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                results.append(Check(path, False, None, str(exc) or type(exc).__name__))
    return results


def format_table(results: list[Check]) -> str:
    """The human-readable report: one line per path."""
    lines = []
    for r in results:
        if r.ok:
            lines.append(f"{r.path:9} ok    {r.rtt_ms:8.2f} ms")
        else:
            lines.append(f"{r.path:9} FAIL  {r.error}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``switchboard check-connectivity``: exit 0 when every path works, 1 otherwise, 2 on a
    usage error."""
    from .cli_join import _token

    if not args.token and not args.data_dir:
        print("switchboard check-connectivity: give --token or --data-dir", file=sys.stderr)
        return 2
    try:
        token = _token(args)
    except Exception as exc:
        print(f"switchboard check-connectivity: {exc}", file=sys.stderr)
        return 2
    aiortc_glue.use_host_addresses(args.ice_address or ())
    if args.turn_ca:
        aiortc_glue.use_turn_tls_context(ssl.create_default_context(cafile=args.turn_ca))
    server_ssl: Any = True  # the system's CAs, or $SSL_CERT_FILE
    if getattr(args, "ca_file", None):
        server_ssl = ssl.create_default_context(cafile=args.ca_file)
    results = asyncio.run(check(args.url, token, args.timeout, ssl_context=server_ssl))
    if args.json:
        print(json.dumps({"checks": [asdict(r) for r in results]}))
    else:
        print(format_table(results))
    return 0 if all(r.ok for r in results) else 1
