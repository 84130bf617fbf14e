"""Which addresses, ports and TLS context aioice's ICE gathering uses (aioice offers no option).

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

import asyncio
import errno
import random
import ssl
from collections.abc import Sequence
from typing import Any

import aioice.ice
import aioice.turn

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: tuple[str, ...] = ()


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Gather ICE host candidates on ``addresses`` only, for every connection of the process.

    An empty sequence restores aioice's choice (every interface but loopback) plus 127.0.0.1,
    so that a browser on the same machine reaches us too. IPv6 literals are accepted.
    """
    global _host_addresses
    _host_addresses = tuple(addresses)
    aioice.ice.get_host_addresses = _get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    if not _host_addresses:
        found = _original_get_host_addresses(use_ipv4, use_ipv6)
        return found + (["127.0.0.1"] if use_ipv4 else [])
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


_port_range: tuple[int, int] | None = None
_original_asyncio = aioice.ice.asyncio


class _PortRangeLoop:
    """The running loop as aioice's gathering sees it: a UDP endpoint asked for port 0 on a
    local address binds to a free port of ``_port_range`` instead, tried in random order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: tuple[int, int]) -> None:
        self._loop, self._ports = loop, ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(
        self, factory: Any, local_addr: Any = None, **kw: Any
    ) -> Any:
        if local_addr is None or local_addr[1] != 0 or kw.get("remote_addr") is not None:
            return await self._loop.create_datagram_endpoint(factory, local_addr=local_addr, **kw)
        low, high = self._ports
        ports = list(range(low, high + 1))
        random.shuffle(ports)
        for port in ports:
            try:
                return await self._loop.create_datagram_endpoint(
                    factory, local_addr=(local_addr[0], port), **kw
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, f"no free UDP port in {low}..{high}")


class _AsyncioForIce:
    """``asyncio`` as ``aioice.ice`` sees it: the same module, except that
    ``get_running_loop`` returns a ``_PortRangeLoop`` while a port range is set."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_original_asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = _original_asyncio.get_running_loop()
        return loop if _port_range is None else _PortRangeLoop(loop, _port_range)


def use_udp_port_range(ports: tuple[int, int] | None) -> None:
    """Bind the host candidates of every later ICE connection of the process to UDP ports in
    ``ports`` = (min, max), inclusive, so that a firewall can open just that range; None
    restores the OS's choice. Each connection uses one port per address (max-bundle,
    rtcp-mux), so the range bounds the concurrent transports times the gathered addresses.
    TURN client sockets are not affected. Raises ValueError for an empty or invalid range."""
    global _port_range
    if ports is not None and not 1 <= ports[0] <= ports[1] <= 65535:
        raise ValueError(f"invalid UDP port range {ports[0]}..{ports[1]}")
    _port_range = ports
    aioice.ice.asyncio = _AsyncioForIce()  # type: ignore[assignment]


_turn_tls_context: ssl.SSLContext | None = None
_original_create_turn_endpoint = aioice.turn.create_turn_endpoint


def use_turn_tls_context(context: ssl.SSLContext | None) -> None:
    """Verify ``turns:`` servers (TURN over TLS, RFC 8656 §3.1) against ``context`` in every
    later connection of the process; None restores the system's trust store. Installs the
    hook that records ``last_turn_error`` too."""
    global _turn_tls_context
    _turn_tls_context = context
    aioice.turn.create_turn_endpoint = _create_turn_endpoint  # type: ignore[assignment]


_last_turn_error: str | None = None


def last_turn_error(clear: bool = False) -> str | None:
    """Why the last TURN allocation of the process failed (aioice drops the reason), e.g.
    ``STUN transaction failed (401 - Unauthorized)`` for a wrong or expired credential;
    None if none failed since the last ``clear``. Never holds a credential."""
    global _last_turn_error
    error = _last_turn_error
    if clear:
        _last_turn_error = None
    return error


async def _create_turn_endpoint(protocol_factory: Any, **kwargs: Any) -> Any:
    global _last_turn_error
    if kwargs.get("ssl") is True and _turn_tls_context is not None:
        kwargs["ssl"] = _turn_tls_context
    try:
        return await _original_create_turn_endpoint(protocol_factory, **kwargs)
    except Exception as exc:
        server = kwargs.get("server_addr")
        _last_turn_error = f"{server[0]}:{server[1]}: " if server else ""
        _last_turn_error += str(exc) or type(exc).__name__
        raise


use_turn_tls_context(None)  # record TURN errors from the start


_original_datagram_received = aioice.ice.StunProtocol.datagram_received

MAX_SRTP_DATAGRAM_BYTES = 1500
"""pylibsrtp's unprotect buffer: a longer SRTP/SRTCP datagram makes it raise ValueError, which
aiortc's receive loop does not catch, so one such datagram would end the connection."""

oversized_srtp_dropped = 0
"""SRTP/SRTCP datagrams dropped by ``_demultiplex_datagram`` for being longer than
``MAX_SRTP_DATAGRAM_BYTES`` (all connections of the process)."""


def _demultiplex_datagram(self: aioice.ice.StunProtocol, data: bytes, addr: Any) -> None:
    """aioice's ``StunProtocol.datagram_received``, demultiplexed first (RFC 7983 §7): only a
    datagram whose first byte is 0..3 can be STUN. aioice parses every datagram as STUN and
    hands on what fails with ValueError; for DTLS and SRTP that parse is wasted work on every
    media packet, and a packet whose bytes happen to look like a STUN header with a short
    attribute raised struct.error in the event loop's callback, and was lost. An SRTP/SRTCP
    datagram (128..191) longer than pylibsrtp can unprotect is dropped and counted here:
    handed on, it would end aiortc's receive loop, and with it the connection."""
    if data and data[0] > 3:
        if len(data) > MAX_SRTP_DATAGRAM_BYTES and 127 < data[0] < 192:  # RTP/RTCP range
            global oversized_srtp_dropped
            oversized_srtp_dropped += 1
            return
        self.receiver.data_received(data, self.local_candidate.component)
    else:
        _original_datagram_received(self, data, addr)


aioice.ice.StunProtocol.datagram_received = _demultiplex_datagram  # type: ignore[method-assign,assignment]
