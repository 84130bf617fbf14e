"""ICE restart (RFC 8445 §9), which aiortc 1.16 lacks.

Part of ``aiortc_glue``, the only package that touches aiortc's and aioice's internals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aioice.ice
import aioice.turn
import aiortc.sdp

log = logging.getLogger(__name__)

# aiortc 1.16 cannot restart ICE. Its RTCIceGatherer makes one aioice Connection, with one
# ufrag/pwd, for the life of the peer connection: createOffer/createAnswer always write those
# credentials and the first gathering's candidates. A remote description with new credentials
# only updates RTCPeerConnection's private ``__remoteIce``: RTCIceTransport.start() returns at
# once when it ran before, so aioice keeps the old remote ufrag/pwd and answers the peer's new
# checks with 401; its remote candidates are dropped when the first description ended them
# (``_remote_candidates_end``) or paired without checks (the check loop has ended). When
# aioice's consent freshness (RFC 7675) expires, it closes the Connection; the DTLS transport's
# receive loop then ends and aiortc closes the whole peer connection.
#
# The hooks below give each RTCIceTransport a fresh aioice Connection (new credentials,
# gathered again, checked and nominated) under the same RTCIceTransport, RTCDtlsTransport and
# SRTP sessions: an ICE restart keeps the DTLS association (RFC 8445 §9). Data keeps flowing
# on the old pair until the new one is nominated (make before break), then the DTLS transport
# reads and writes through the new one and the old one closes. Protocol, for either side:
#
#   offerer:  await begin_ice_restart(pc); createOffer(); setLocalDescription(); ...
#             setRemoteDescription(answer); finish_ice_restart(pc)
#   answerer: if is_ice_restart(pc, offer): await begin_ice_restart(pc)
#             setRemoteDescription(offer); finish_ice_restart(pc); createAnswer(); ...


OLD_PAIR_GRACE_S = 3.0  # how long the replaced Connection still receives after a restart


class IceRestartError(Exception):
    """An ICE restart cannot begin: the peer connection has no ICE transport yet, or it has
    failed or closed (a restart must come before consent to send expires, RFC 7675 §5.1)."""


class _IceSwitch:
    """What one RTCIceTransport's DTLS transport reads from and writes to: ``current``, an aioice
    Connection, swapped when a restart's new Connection is nominated. ``pending`` is the new
    Connection while a restart runs; ``task`` its checks; ``last_rx`` the monotonic time (s) of
    the last datagram received (DTLS, SRTP, SRTCP)."""

    def __init__(self, ice: Any) -> None:
        self.ice = ice
        self.current: aioice.ice.Connection = ice._connection
        self.pending: aioice.ice.Connection | None = None
        self.task: asyncio.Task[bool] | None = None
        self.restarts = 0
        self.last_rx = asyncio.get_running_loop().time()
        self.retiring: set[aioice.ice.Connection] = set()  # replaced, closing soon
        self.closing: set[asyncio.Future[None]] = set()

    async def recv(self) -> bytes:
        while True:
            connection = self.current
            try:
                data = await connection.recv()
            except ConnectionError:
                if connection is self.current:
                    raise
                continue  # swapped while we waited: read the new Connection
            self.last_rx = asyncio.get_running_loop().time()
            return data

    async def send(self, data: bytes) -> None:
        await self.current.send(data)


def _ice_transports(pc: Any) -> list[Any]:
    """The distinct RTCIceTransports of ``pc`` (one with max-bundle)."""
    found: dict[int, Any] = {}
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        found[id(ice)] = ice
    if pc.sctp is not None:
        found[id(pc.sctp.transport.transport)] = pc.sctp.transport.transport
    return list(found.values())


def _switch(ice: Any) -> _IceSwitch:
    switch: _IceSwitch | None = getattr(ice, "_switchboard_ice_switch", None)
    if switch is None:
        switch = _IceSwitch(ice)
        ice._switchboard_ice_switch = switch
        # The DTLS transport looks these up on every datagram (RTCDtlsTransport._recv_next,
        # _send_rtp, _write_ssl), so later reads and writes go through the switch.
        ice._recv = switch.recv
        ice._send = switch.send
        stop = ice.stop

        async def stop_both() -> None:
            # The pending restart first: aiortc's stop() closes ice._connection, then awaits
            # its monitor, which waits for the current Connection to close (it would wait
            # forever with the pending one in ice._connection).
            await _drop_pending(switch)
            await stop()
            for connection in (switch.current, *switch.retiring):
                await connection.close()
            switch.retiring.clear()

        ice.stop = stop_both
    return switch


def ice_credentials(sdp: str) -> tuple[str, str] | None:
    """The (ice-ufrag, ice-pwd) of the first m-section of ``sdp`` (RFC 8839 §5.4), session-level
    attributes included; None when absent or unparsable. With BUNDLE every m-section shares
    them."""
    try:
        media = aiortc.sdp.SessionDescription.parse(sdp).media
    except Exception:
        return None
    ice = media[0].ice if media else None
    if ice is None or not ice.usernameFragment or not ice.password:
        return None
    return ice.usernameFragment, ice.password


def is_ice_restart(pc: Any, remote_sdp: str) -> bool:
    """Whether ``remote_sdp`` restarts ICE: ``pc`` has a remote description and ``remote_sdp``
    carries other credentials (RFC 8839 §4.4.1.1.1: a changed ufrag or pwd)."""
    current = pc.remoteDescription
    if current is None:
        return False
    before, after = ice_credentials(current.sdp), ice_credentials(remote_sdp)
    return before is not None and after is not None and before != after


def ice_restart_pending(pc: Any) -> bool:
    """Whether ``begin_ice_restart`` ran on ``pc`` and its checks have not started yet."""
    return any(
        (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
        and s.pending is not None
        and s.task is None
        for ice in _ice_transports(pc)
    )


async def begin_ice_restart(pc: Any) -> None:
    """Give each ICE transport of ``pc`` new local credentials and candidates, gathered now; the
    next local description (offer or answer) carries them. Media keeps flowing on the selected
    pair meanwhile. Restarting again before ``finish_ice_restart`` drops the earlier attempt.
    Raises IceRestartError when there is no ICE transport or it is no longer usable."""
    transports = _ice_transports(pc)
    if not transports:
        raise IceRestartError("no ICE transport to restart yet")
    for ice in transports:
        switch = getattr(ice, "_switchboard_ice_switch", None)
        current = ice._connection if switch is None else switch.current
        if ice.state != "completed" or not current._nominated:
            raise IceRestartError(f"the ICE transport is {ice.state}, not connected")
    for ice in transports:
        switch = _switch(ice)
        await _drop_pending(switch)
        old = switch.current
        new = aioice.ice.Connection(
            ice_controlling=old.ice_controlling,  # the same side offers on each connection
            stun_server=old.stun_server,
            turn_server=old.turn_server,
            turn_username=old.turn_username,
            turn_password=old.turn_password,
            turn_ssl=old.turn_ssl,
            turn_transport=old.turn_transport,
            use_ipv4=old._use_ipv4,
            use_ipv6=old._use_ipv6,
            transport_policy=old._transport_policy,
        )
        await new.gather_candidates()
        if ice.state == "closed":  # stopped while gathering: stop_both has run already
            await new.close()
            raise IceRestartError("the ICE transport closed during the restart")
        switch.pending = new
        # Local descriptions read the gatherer's Connection; remote candidates (SDP and
        # trickle) go to the transport's, which ends them afresh.
        ice.iceGatherer._connection = new
        ice.iceGatherer._remote_candidates_end = False
        ice._connection = new


def finish_ice_restart(pc: Any) -> asyncio.Task[bool]:
    """Start the restart's connectivity checks, once ``pc``'s remote description carries the
    peer's new credentials; return a task that is True when the new pair carries the data
    (the old Connection still receives for ``OLD_PAIR_GRACE_S``, then closes) and False when
    the checks failed (the old pair stays, if it still works). Without a restart pending, a
    task that is True at once."""
    credentials = ice_credentials(pc.remoteDescription.sdp) if pc.remoteDescription else None
    tasks = []
    for ice in _ice_transports(pc):
        switch: _IceSwitch | None = getattr(ice, "_switchboard_ice_switch", None)
        if switch is None or switch.pending is None or switch.task is not None:
            continue
        if credentials is None:
            raise IceRestartError("the remote description has no ICE credentials")
        switch.pending.remote_username, switch.pending.remote_password = credentials
        switch.pending.remote_is_lite = pc.remoteDescription.sdp.find("a=ice-lite") >= 0
        switch.task = asyncio.ensure_future(_run_restart(switch, switch.pending))
        tasks.append(switch.task)

    async def all_done() -> bool:
        results = await asyncio.gather(*tasks)
        return all(results)

    return asyncio.ensure_future(all_done())


async def _run_restart(switch: _IceSwitch, new: aioice.ice.Connection) -> bool:
    ice = switch.ice
    try:
        await new.connect()
    except (ConnectionError, asyncio.CancelledError):
        if switch.pending is new:  # not superseded by a later restart
            switch.pending, switch.task = None, None
            ice.iceGatherer._connection = ice._connection = switch.current
        await new.close()
        log.info("ICE restart failed; the previous pair stays")
        return False
    if switch.pending is not new or ice.state == "closed":
        await new.close()  # superseded, or the transport stopped (which closed the rest)
        return False
    old = switch.current
    switch.current, switch.pending, switch.task = new, None, None
    switch.restarts += 1
    # RTCIceTransport._monitor turns the old Connection's close into "failed": follow the new.
    monitor = ice._RTCIceTransport__monitor_task
    if monitor is not None:
        monitor.cancel()
    ice._RTCIceTransport__monitor_task = asyncio.ensure_future(ice._monitor())
    # The peer may send on the old pair a moment longer (it nominates on its own clock): what
    # the old Connection holds and what reaches it later join the new one's queue, oldest
    # first, until it closes OLD_PAIR_GRACE_S later.
    queued = _drain(old._queue) + _drain(new._queue)
    for item in queued:
        new._queue.put_nowait(item)
    old.data_received = new.data_received  # type: ignore[method-assign]
    # A read may wait on the old Connection's queue (begun before the switch was installed):
    # a datagram whose first byte is 0 wakes it and RTCDtlsTransport ignores it (RFC 7983 §7:
    # 0..3 is STUN, which it does not handle), so the next read goes to the new Connection.
    old._queue.put_nowait((b"\x00", 1))
    switch.retiring.add(old)
    asyncio.get_running_loop().call_later(OLD_PAIR_GRACE_S, _retire_later, switch, old)
    return True


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    items = []
    while not queue.empty():
        if (item := queue.get_nowait()) is not None:
            items.append(item)
    return items


def _retire_later(switch: _IceSwitch, old: aioice.ice.Connection) -> None:
    if old in switch.retiring:
        switch.retiring.discard(old)
        switch.closing.add(task := asyncio.ensure_future(old.close()))
        task.add_done_callback(switch.closing.discard)


async def _drop_pending(switch: _IceSwitch) -> None:
    new, task = switch.pending, switch.task
    switch.pending, switch.task = None, None
    if task is not None:
        task.cancel()
    if new is not None:
        await new.close()
    switch.ice.iceGatherer._connection = switch.ice._connection = switch.current


async def abandon_ice_restart(pc: Any) -> None:
    """Drop a restart ``begin_ice_restart`` began (its description was refused): the next
    descriptions carry the current credentials again."""
    for ice in _ice_transports(pc):
        if (switch := getattr(ice, "_switchboard_ice_switch", None)) is not None:
            await _drop_pending(switch)


def ice_restarts(pc: Any) -> int:
    """How many ICE restarts of ``pc`` completed (a new pair carries the data)."""
    return sum(
        s.restarts
        for ice in _ice_transports(pc)
        if (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
    )


def ice_idle_s(pc: Any) -> float | None:
    """Seconds since ``pc`` last received a datagram through ICE (DTLS, SRTP, SRTCP; not
    STUN); None before the first ICE restart hook or ``watch_ice`` installed the switch."""
    switches = [
        s
        for ice in _ice_transports(pc)
        if (s := getattr(ice, "_switchboard_ice_switch", None)) is not None
    ]
    if not switches:
        return None
    return asyncio.get_running_loop().time() - max(s.last_rx for s in switches)


def watch_ice(pc: Any) -> None:
    """Install the switch on ``pc``'s ICE transports now, so that ``ice_idle_s`` counts from
    here (call once connected)."""
    for ice in _ice_transports(pc):
        _switch(ice)


def blackhole_ice(pc: Any) -> None:
    """Fault injection: the sockets of ``pc``'s current ICE pairs drop every datagram in and
    out, as when the network under a peer changes. A restart gathers new sockets."""
    for ice in _ice_transports(pc):
        for protocol in _switch(ice).current._protocols:

            async def no_data(data: bytes, addr: tuple[str, int]) -> None:
                return None

            protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
            protocol.send_stun = lambda message, addr: None  # type: ignore[method-assign]
            protocol.send_data = no_data  # type: ignore[method-assign]
