"""Real calls through the real server: Chromium pages (the web demo) and the Python peer.

Run with: .venv/bin/pytest -m browser tests/browser
Everything stays on 127.0.0.1; waits are on conditions with timeouts, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from .conftest import ice_address_args

pytestmark = pytest.mark.browser

BOT_DURATION_S = 8
MEDIA_TIMEOUT_MS = 20_000
DOM_TIMEOUT_MS = 10_000

# Playwright's wait_for_function does not await a promise (a pending promise is truthy), and
# RTCPeerConnection.getStats() is asynchronous: so the page itself polls its stats, every
# POLL_MS, until the condition holds or the deadline passes, in one page.evaluate.
POLL_MS = 200
WAIT_FOR_STATS = """
async ([condition, arg, timeoutMs, pollMs]) => {
  const holds = new Function("stats", "sb", "arg", `return (${condition})(stats, sb, arg);`);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const sb = window.switchboard;
    const stats = await sb.stats();
    if (holds(stats, sb, arg)) return { ok: true, stats };
    if (performance.now() > deadline) return { ok: false, stats, remote: sb.remote };
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
"""

# More than `minFrames` frames decoded (video), or packets received and samples decoded (audio),
# of `kind` from the participant called `name`.
DECODES_FROM = """
(stats, sb, [name, kind, minFrames]) => {
  const ids = Object.entries(sb.remote).filter(([, p]) => p.name === name).map(([id]) => id);
  return stats.inbound.some((s) => ids.includes(s.participant_id) && s.kind === kind &&
    (kind === "video" ? s.framesDecoded > minFrames
                      : s.packetsReceived > minFrames && s.totalSamplesReceived > 0));
}
"""

# Sending both audio and video (the publish connection is up).
PUBLISHING = """
(stats) => ["audio", "video"].every((kind) =>
  stats.outbound.some((s) => s.kind === kind && s.packetsSent > 0))
"""


async def wait_for_stats(page, condition: str, arg=None, timeout_ms: int = MEDIA_TIMEOUT_MS):
    """Wait until ``condition(stats, window.switchboard, arg)`` holds in ``page``; return the
    stats. On timeout, fail with the last stats seen."""
    result = await page.evaluate(WAIT_FOR_STATS, [condition, arg, timeout_ms, POLL_MS])
    if not result["ok"]:
        pytest.fail(
            f"{page.url}: timed out after {timeout_ms} ms waiting for {condition.strip()} "
            f"with {arg!r}\n"
            f"last stats: {json.dumps(result['stats'], indent=1)}\n"
            f"remote: {json.dumps(result['remote'], indent=1)}"
        )
    return result["stats"]


async def wait_decodes(page, name: str, kind: str = "video", min_frames: int = 10) -> None:
    await wait_for_stats(page, DECODES_FROM, [name, kind, min_frames])


def remote_tile(name: str) -> str:
    """The selector of the tile of the remote participant called ``name``."""
    return f'article.tile:not(.local)[data-name="{name}"]'


async def test_browser_and_python_peer(server, open_call_page, tmp_path: Path) -> None:
    page = await open_call_page("browser", "r1")
    await wait_for_stats(page, PUBLISHING)

    stats_path = tmp_path / "bot-stats.json"
    bot = await asyncio.create_subprocess_exec(
        *server.command(
            "join",
            "--url",
            server.url,
            "--room",
            "r1",
            "--name",
            "bot",
            "--data-dir",
            str(server.data_dir),
            "--duration",
            str(BOT_DURATION_S),
            "--stats-json",
            str(stats_path),
            *ice_address_args(),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # The browser decodes the bot's test pattern and receives its tone...
        await wait_decodes(page, "bot", "video", min_frames=10)
        await wait_decodes(page, "bot", "audio", min_frames=10)
        await page.wait_for_selector(remote_tile("bot"), timeout=DOM_TIMEOUT_MS)
        # ...and the bot, when its time is up, reports what it decoded of the browser.
        output, _ = await asyncio.wait_for(bot.communicate(), BOT_DURATION_S + 30)
    finally:
        if bot.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                bot.kill()
            await bot.wait()
    bot_log = output.decode(errors="replace")
    assert bot.returncode == 0, f"the Python peer failed ({bot.returncode}):\n{bot_log}"
    received = json.loads(stats_path.read_text())["received"]
    from_browser = {entry["kind"]: entry for entry in received if entry["participant"] == "browser"}
    assert set(from_browser) == {"audio", "video"}, f"{received}\n{bot_log}"
    for kind in ("audio", "video"):
        assert from_browser[kind]["packets"] > 0, received
        assert from_browser[kind]["frames_decoded"] > 0, received
    assert from_browser["video"]["width"] > 0 and from_browser["video"]["height"] > 0, received

    # The bot left: its tile goes away.
    await page.wait_for_selector(remote_tile("bot"), state="detached", timeout=DOM_TIMEOUT_MS)


async def test_browsers_late_join_leave_and_mute(open_call_page) -> None:
    alice = await open_call_page("alice", "r2")
    bob = await open_call_page("bob", "r2")
    await wait_decodes(alice, "bob")
    await wait_decodes(bob, "alice")

    # A late joiner gets everyone already there, and everyone gets it.
    carol = await open_call_page("carol", "r2")
    await asyncio.gather(
        wait_decodes(carol, "alice"),
        wait_decodes(carol, "bob"),
        wait_decodes(alice, "carol"),
        wait_decodes(bob, "carol"),
        wait_decodes(carol, "alice", "audio"),
        wait_decodes(alice, "carol", "audio"),
    )
    for page, others in (
        (alice, ("bob", "carol")),
        (bob, ("alice", "carol")),
        (carol, ("alice", "bob")),
    ):
        for other in others:
            await page.wait_for_selector(remote_tile(other), timeout=DOM_TIMEOUT_MS)

    # Bob leaves: his tile disappears for the others, and his page is back at the form.
    await bob.get_by_role("button", name="Leave").click()
    await asyncio.gather(
        alice.wait_for_selector(remote_tile("bob"), state="detached", timeout=DOM_TIMEOUT_MS),
        carol.wait_for_selector(remote_tile("bob"), state="detached", timeout=DOM_TIMEOUT_MS),
        bob.wait_for_selector("#join-form", state="visible", timeout=DOM_TIMEOUT_MS),
    )
    assert await bob.evaluate("() => window.switchboard.participantId") is None

    # Alice mutes her camera: Carol sees the indicator (a track_muted event).
    video_indicator = f'{remote_tile("alice")} .indicator[data-kind="video"]'
    assert not await carol.is_visible(video_indicator)
    await alice.get_by_role("button", name="Mute camera").click()
    await carol.wait_for_selector(video_indicator, state="visible", timeout=DOM_TIMEOUT_MS)
    await alice.wait_for_selector('#mute-video[aria-pressed="true"]', timeout=DOM_TIMEOUT_MS)
    local_video_enabled = (
        "() => document.querySelector('article.tile.local video').srcObject"
        ".getVideoTracks()[0].enabled"
    )
    assert await alice.evaluate(local_video_enabled) is False

    # Bob joins again from the form: he sees Alice muted (from the join reply's track list)
    # and gets Carol's media; the others get his tile back.
    await bob.get_by_role("button", name="Join").click()
    await bob.wait_for_function("() => window.switchboard.participantId !== null")
    await asyncio.gather(
        bob.wait_for_selector(video_indicator, state="visible", timeout=DOM_TIMEOUT_MS),
        wait_decodes(bob, "carol"),
        wait_decodes(carol, "bob"),
        alice.wait_for_selector(remote_tile("bob"), timeout=DOM_TIMEOUT_MS),
    )

    # Alice unmutes: the indicator goes away for both.
    await alice.get_by_role("button", name="Unmute camera").click()
    assert await alice.evaluate(local_video_enabled) is True
    await asyncio.gather(
        carol.wait_for_selector(video_indicator, state="hidden", timeout=DOM_TIMEOUT_MS),
        bob.wait_for_selector(video_indicator, state="hidden", timeout=DOM_TIMEOUT_MS),
    )
