"""In-call data between Chromium pages (the web demo) and a Python peer, through the real server.

Run with: .venv/bin/pytest -m browser tests/browser/test_browser_data.py
Waits are on conditions with timeouts (Playwright's wait_for_function, an asyncio.Event on the
Python side), never sleeps. Absence is proven by order: the reliable channel is ordered
(RFC 8831 §6.6), so a page that got a broadcast sent after a targeted message would have got
the targeted one first, had it been a target.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Callable

import pytest

from switchboard.client import Room
from switchboard.sfu.data import MAX_PAYLOAD_BYTES

from .conftest import Server

pytestmark = pytest.mark.browser

WAIT_MS = 20_000
PATTERN_JS = "new Uint8Array(n).map((_, i) => (i * 31 + 7) & 255)"


def pattern(n: int) -> bytes:
    return bytes((i * 31 + 7) & 255 for i in range(n))


class Bot:
    """A Python peer (the SDK in this process) recording the data it receives."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.got: list[tuple[str, bytes | str, bool]] = []
        self.changed = asyncio.Event()
        room.on_data = self._on_data

    def _on_data(self, sender: str, payload: bytes | str, reliable: bool) -> None:
        self.got.append((sender, payload, reliable))
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.0, deadline - time.monotonic()))


@pytest.fixture
async def bot(server: Server) -> AsyncIterator[Callable[[str], object]]:
    bots: list[Bot] = []

    async def connect(room: str) -> Bot:
        token = subprocess.run(
            server.command("token", "--data-dir", str(server.data_dir), "--user", "bot"),
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        joined = Bot(await Room.connect(server.url, token, room, "bot", ["127.0.0.1"]))
        bots.append(joined)
        await joined.room.open_data()  # messages for the bot wait at the SFU until then
        return joined

    yield connect
    for b in bots:
        await b.room.close()


async def received(page, predicate: str, arg=None) -> None:
    """Wait until ``predicate(window.switchboard.received, arg)`` holds in ``page``."""
    await page.wait_for_function(
        f"(arg) => ({predicate})(window.switchboard.received, arg)", arg=arg, timeout=WAIT_MS
    )


HAS_TEXT = "(got, [sender, text]) => got.some((m) => m.senderId === sender && m.text === text)"


async def test_browser_and_python_exchange_data(open_call_page, bot) -> None:
    alice = await open_call_page("alice", "d1")
    carol = await open_call_page("carol", "d1")
    peer = await bot("d1")
    ida, idc = [await p.evaluate("window.switchboard.participantId") for p in (alice, carol)]
    idb = peer.room.participant_id

    # Python -> browsers: text broadcast, then 200 KiB of random bytes, byte-identical.
    blob = secrets.token_bytes(200 * 1024)
    await peer.room.send_data("hello, browsers")
    await peer.room.send_data(blob)
    for page in (alice, carol):
        await received(page, HAS_TEXT, [idb, "hello, browsers"])
        await received(
            page,
            "(got, [s, n]) => got.some((m) => m.senderId === s && m.bytes === n)",
            [idb, len(blob)],
        )
        digests = await page.evaluate("window.switchboard.received.map((m) => m.sha256)")
        assert hashlib.sha256(blob).hexdigest() in digests

    # Browser -> Python: text, and 200 KiB of a known pattern, byte-identical.
    await alice.evaluate("window.switchboard.sendData('hello, bot')")
    await alice.evaluate(f"(n) => window.switchboard.sendData({PATTERN_JS})", 200 * 1024)
    await peer.until(lambda: len([g for g in peer.got if g[0] == ida]) >= 2)
    assert (ida, "hello, bot", True) in peer.got
    assert (ida, pattern(200 * 1024), True) in peer.got

    # Targeted, both ways: carol (not a target) gets the later broadcast, never the message.
    await peer.room.send_data("for alice only", to=[ida])
    await peer.room.send_data("marker 1")
    await alice.evaluate(f"window.switchboard.sendData('for the bot only', {{to: ['{idb}']}})")
    await alice.evaluate("window.switchboard.sendData('marker 2')")
    await received(carol, HAS_TEXT, [idb, "marker 1"])
    await received(carol, HAS_TEXT, [ida, "marker 2"])
    await received(alice, HAS_TEXT, [idb, "for alice only"])
    await peer.until(lambda: (ida, "marker 2", True) in peer.got)
    assert (ida, "for the bot only", True) in peer.got
    texts = await carol.evaluate("window.switchboard.received.map((m) => m.text)")
    assert "for alice only" not in texts and "for the bot only" not in texts

    # A spoofed sender is overwritten by the SFU.
    await alice.evaluate(
        """(carolId) => {
          const header = new TextEncoder().encode(JSON.stringify({from: carolId}));
          const body = new TextEncoder().encode("spoofed");
          const out = new Uint8Array(4 + header.length + body.length);
          out.set([1, 1, header.length >> 8, header.length & 255]);
          out.set(header, 4); out.set(body, 4 + header.length);
          window.switchboard.dataChannels().reliable.send(out);
        }""",
        idc,
    )
    await peer.until(lambda: any(g[1] == "spoofed" for g in peer.got))
    assert [g[0] for g in peer.got if g[1] == "spoofed"] == [ida]

    # Over 255 KiB: refused before sending, with a clear error; nothing cut.
    error = await alice.evaluate(
        f"(n) => window.switchboard.sendData({PATTERN_JS})"
        ".then(() => null, (e) => e.code + ': ' + e.message)",
        MAX_PAYLOAD_BYTES + 1,
    )
    assert error == (
        f"data_too_large: payload of {MAX_PAYLOAD_BYTES + 1} bytes; "
        f"in-call data messages are at most {MAX_PAYLOAD_BYTES} bytes"
    )
    await alice.evaluate(f"(n) => window.switchboard.sendData({PATTERN_JS})", MAX_PAYLOAD_BYTES)
    await peer.until(lambda: (ida, pattern(MAX_PAYLOAD_BYTES), True) in peer.got)


async def test_reactions_raise_hand_and_a_joining_participant(open_call_page, bot) -> None:
    alice = await open_call_page("alice", "d2")
    carol = await open_call_page("carol", "d2")
    peer = await bot("d2")
    ida = await alice.evaluate("window.switchboard.participantId")

    # The bot greets each newcomer the moment it joins (its data channel is not open yet).
    def greet(participant: dict[str, str]) -> None:
        asyncio.ensure_future(
            peer.room.send_data(f"welcome {participant['name']}", to=[participant["id"]])
        )

    peer.room.on_participant_joined = greet

    await alice.click("#raise-hand")
    await carol.wait_for_selector(
        'article.tile[data-name="alice"] .hand', state="visible", timeout=WAIT_MS
    )
    await alice.click('.reaction-button[data-emoji="🎉"]')
    await carol.wait_for_function(
        "(id) => window.switchboard.reactions.some((r) => r.senderId === id && r.emoji === '🎉')",
        arg=ida,
        timeout=WAIT_MS,
    )
    await carol.wait_for_selector(
        'article.tile[data-name="alice"] .reaction-burst', state="visible", timeout=WAIT_MS
    )

    # A late joiner gets the bot's greeting and alice's raised hand, both sent while it joined.
    dave = await open_call_page("dave", "d2")
    await received(dave, HAS_TEXT, [peer.room.participant_id, "welcome dave"])
    await dave.wait_for_selector(
        'article.tile[data-name="alice"] .hand', state="visible", timeout=WAIT_MS
    )
    assert await alice.get_attribute("#raise-hand", "aria-pressed") == "true"

    await alice.click("#raise-hand")  # lower it
    await dave.wait_for_selector(
        'article.tile[data-name="alice"] .hand', state="hidden", timeout=WAIT_MS
    )
