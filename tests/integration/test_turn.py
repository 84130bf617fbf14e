"""Calls and the connectivity self-test through a real coturn on loopback.

coturn runs with the configuration ``switchboard turn-config`` writes (which must let the relay
reach the SFU's 127.0.0.1 and nothing else private), and the peers use
``iceTransportPolicy: "relay"``, so every media packet goes client → coturn → SFU and back.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from switchboard.client import IceError, Room, ToneTrack, VideoTestPattern
from switchboard.client.connectivity import check
from switchboard.sfu import MediaConfig, aiortc_glue
from switchboard.signalling.app import create_app
from switchboard.signalling.calls import handlers
from switchboard.signalling.config import Config
from switchboard.signalling.datadir import ensure_data_dir
from switchboard.signalling.identity.routes import new_identity_id
from switchboard.signalling.identity.tokens import TokenService
from switchboard.signalling.traversal import credentials
from switchboard.signalling.traversal.credentials import TraversalConfig, ensure_turn_secret
from tests.helpers.coturn import Coturn, start_coturn

from .conftest import LOOPBACK, Peer

JOIN_TIMEOUT_S = 60


@dataclass
class TurnSetup:
    url: str
    data_dir: Path
    coturn: Coturn
    config: Config
    tokens: TokenService

    def token(self) -> str:
        return self.tokens.mint(new_identity_id(self.config.access_key), ["voip"], 60)[0]


@pytest.fixture
async def turn(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[TurnSetup]:
    """coturn and the application on loopback; ``param`` overrides TraversalConfig fields."""
    data_dir = tmp_path / "data"
    key, _ = ensure_data_dir(data_dir)
    async with start_coturn(tmp_path / "coturn", data_dir) as coturn:
        traversal = TraversalConfig(
            turn_urls=tuple(coturn.turn_urls), turn_secret=ensure_turn_secret(data_dir)
        )
        traversal = replace(traversal, **getattr(request, "param", {}))
        config = Config(
            access_key=key,
            data_dir=data_dir,
            media=MediaConfig(ice_addresses=LOOPBACK),
            traversal=traversal,
        )
        server = TestServer(create_app(config), host="127.0.0.1")
        await server.start_server()
        aiortc_glue.use_turn_tls_context(coturn.tls_context())
        try:
            url = str(server.make_url("/")).rstrip("/")
            yield TurnSetup(url, data_dir, coturn, config, TokenService(key))
        finally:
            aiortc_glue.use_turn_tls_context(None)
            await server.close()


def _join_command(setup: TurnSetup, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "switchboard.signalling.cli", "join",
        "--url", setup.url, "--data-dir", str(setup.data_dir),
        "--ice-address", "127.0.0.1", "--ice-transport-policy", "relay", *args,
    ]  # fmt: skip


async def test_relay_call_both_ways(turn: TurnSetup, tmp_path: Path) -> None:
    """An SDK peer and a `switchboard join` peer, both relay-only, decode each other."""
    room = await Room.connect(
        turn.url, turn.token(), "relay", "sdk", LOOPBACK, ice_transport_policy="relay"
    )
    peer = Peer(room)
    try:
        await room.publish([ToneTrack(), VideoTestPattern(320, 240)])
        await room.wait_connected(15)
        local = room.publish_pc.localDescription.sdp
        assert " typ relay" in local and " typ host" not in local
        stats = tmp_path / "bot.json"
        bot = await asyncio.create_subprocess_exec(
            *_join_command(turn, "--room", "relay", "--name", "bot", "--duration", "30",
                           "--stats-json", str(stats)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            await peer.until(
                lambda: any(
                    t.participant_name == "bot" and peer.frames[tid] >= 20
                    for tid, t in peer.tracks.items()
                    if t.kind == "video"
                ),
                timeout=30,
            )
            # The bot has been receiving since it joined; let it see 20 frames of ours too.
            bot.send_signal(2)  # SIGINT: leave now and write the report
            output, _ = await asyncio.wait_for(bot.communicate(), JOIN_TIMEOUT_S)
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
        assert bot.returncode == 0, output.decode()
        report = json.loads(stats.read_text())["received"]
        frames = {r["kind"]: r["frames_decoded"] for r in report if r["participant"] == "sdk"}
        assert frames["video"] > 0 and frames["audio"] > 0, output.decode()
        audio = [tid for tid, t in peer.tracks.items() if t.kind == "audio"]
        assert any(peer.frames[tid] > 0 for tid in audio)
    finally:
        await peer.close()


@pytest.mark.parametrize("turn", [{"turn_secret": "not-the-secret"}], indirect=True)
async def test_wrong_credential_fails_clearly(turn: TurnSetup) -> None:
    room = await Room.connect(
        turn.url, turn.token(), "relay", "sdk", LOOPBACK, ice_transport_policy="relay"
    )
    try:
        with pytest.raises(IceError, match="401"):
            await asyncio.wait_for(room.publish([ToneTrack()]), 20)
    finally:
        await room.close()
    bot = await asyncio.create_subprocess_exec(
        *_join_command(turn, "--room", "relay", "--name", "bot", "--duration", "30"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(bot.communicate(), JOIN_TIMEOUT_S)
    assert bot.returncode == 1
    assert "no TURN allocation succeeded" in output.decode()
    assert "401" in output.decode()


async def test_expired_credential_fails_clearly(
    turn: TurnSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    def expired(config: TraversalConfig, user_id: str, ttl_s: int | None = None, now=None):
        return credentials.ice_servers(config, user_id, 60, now=time.time() - 3600)

    monkeypatch.setattr(handlers, "ice_servers", expired)
    room = await Room.connect(
        turn.url, turn.token(), "relay", "sdk", LOOPBACK, ice_transport_policy="relay"
    )
    try:
        with pytest.raises(IceError, match="401"):
            await asyncio.wait_for(room.publish([ToneTrack()]), 20)
    finally:
        await room.close()


async def test_connectivity_self_test_every_path(turn: TurnSetup) -> None:
    results = await check(turn.url, turn.token(), timeout_s=10)
    assert [(r.path, r.ok, r.error) for r in results] == [
        ("udp", True, None),
        ("turn-udp", True, None),
        ("turn-tcp", True, None),
        ("turn-tls", True, None),
    ]
    assert all(r.rtt_ms is not None and 0 < r.rtt_ms < 1000 for r in results)


async def test_check_connectivity_command(turn: TurnSetup) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard.signalling.cli", "check-connectivity",
        "--url", turn.url, "--data-dir", str(turn.data_dir), "--ice-address", "127.0.0.1",
        "--turn-ca", str(turn.coturn.ca_file), "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), JOIN_TIMEOUT_S)
    assert process.returncode == 0, err.decode()
    checks = json.loads(out)["checks"]
    print(out.decode())  # the loopback set-up's report, shown with -s
    assert [c["path"] for c in checks] == ["udp", "turn-udp", "turn-tcp", "turn-tls"]
    assert all(c["ok"] and c["error"] is None and c["rtt_ms"] > 0 for c in checks), checks


@pytest.mark.parametrize("turn", [{"turn_urls": ()}], indirect=True)
async def test_self_test_without_relay_reports_it(turn: TurnSetup) -> None:
    results = await check(turn.url, turn.token(), timeout_s=10)
    assert results[0].ok
    for r in results[1:]:
        assert not r.ok and "no TURN server configured" in (r.error or "")


async def test_relay_cannot_reach_other_private_addresses(
    turn: TurnSetup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """turn-config denies 127/8 but the SFU's 127.0.0.1: an SFU on 127.0.0.2 is unreachable
    through the relay (coturn answers CreatePermission with 403), directly it is not."""
    aiortc_glue.use_host_addresses(["127.0.0.2"])  # the SFU's (and our) candidates
    try:
        results = await check(turn.url, turn.token(), timeout_s=4, paths=("udp", "turn-udp"))
    finally:
        aiortc_glue.use_host_addresses(LOOPBACK)
    assert results[0].ok, results
    assert not results[1].ok and "no connectivity" in (results[1].error or ""), results
