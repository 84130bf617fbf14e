"""Chromium through coturn: the web demo with ``?relay=1`` (iceTransportPolicy "relay") in a
call with a relay-only Python peer, and the ``/connectivity`` self-test page.

coturn runs on loopback with the configuration of ``switchboard turn-config``; the server gets
its URLs with ``--turn-url``. Waits are on conditions with deadlines, never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.coturn import Coturn, start_coturn

from .conftest import (
    CHROMIUM_ARGS,
    LISTENING,
    SERVER_START_TIMEOUT_S,
    Server,
    _drain,
    chromium_path,
    ice_address_args,
)
from .conftest import switchboard_command as command
from .test_browser_call import DOM_TIMEOUT_MS, wait_decodes

pytestmark = pytest.mark.browser

BOT_DURATION_S = 10

# The selected candidate pair's local candidate type of a page's publish connection.
SELECTED_LOCAL_TYPE = """
async () => {
  const pc = window.switchboard.pcs.publish;
  if (!pc) return null;
  const stats = await pc.getStats();
  for (const s of stats.values()) {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      return stats.get(pair.localCandidateId).candidateType;
    }
  }
  return null;
}
"""


@pytest.fixture
async def coturn(tmp_path: Path) -> AsyncIterator[Coturn]:
    async with start_coturn(tmp_path / "coturn", tmp_path / "data") as running:
        yield running


@pytest.fixture
async def relay_server(tmp_path: Path, coturn: Coturn) -> AsyncIterator[Server]:
    """``switchboard serve`` handing out coturn's URLs, ready once it printed "listening"."""
    data_dir = tmp_path / "data"
    turn_args = [arg for url in coturn.turn_urls for arg in ("--turn-url", url)]
    process = await asyncio.create_subprocess_exec(
        *command("serve", "--port", "0", "--data-dir", str(data_dir), *turn_args,
                 *ice_address_args()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert process.stdout is not None
    log: list[str] = []

    async def listening() -> str:
        while line := await process.stdout.readline():
            log.append(line.decode(errors="replace").rstrip())
            if match := LISTENING.search(log[-1]):
                return match.group(1)
        raise RuntimeError("the server exited before listening")

    try:
        url = await asyncio.wait_for(listening(), SERVER_START_TIMEOUT_S)
    except (TimeoutError, RuntimeError) as exc:
        process.kill()
        await process.wait()
        pytest.fail(f"the server did not start: {exc!r}\n" + "\n".join(log))
    server = Server(url=url, data_dir=data_dir, process=process, log=log)
    drain = asyncio.create_task(_drain(process.stdout, log))
    try:
        yield server
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain, 5)


async def test_browser_relay_call_with_python_peer(
    browser, relay_server: Server, coturn: Coturn, tmp_path: Path
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    await page.goto(f"{relay_server.url}/?name=browser&room=relay&autojoin=1&relay=1")
    await page.wait_for_function(
        "() => window.switchboard && window.switchboard.participantId !== null",
        timeout=15_000,
    )
    stats_path = tmp_path / "bot.json"
    bot = await asyncio.create_subprocess_exec(
        *command("join", "--url", relay_server.url, "--room", "relay", "--name", "bot",
                 "--data-dir", str(relay_server.data_dir), "--duration", str(BOT_DURATION_S),
                 "--stats-json", str(stats_path), "--ice-transport-policy", "relay",
                 "--turn-ca", str(coturn.ca_file), *ice_address_args()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await wait_decodes(page, "bot", "video", min_frames=10)
        await wait_decodes(page, "bot", "audio", min_frames=10)
        assert await page.evaluate(SELECTED_LOCAL_TYPE) == "relay"
        output, _ = await asyncio.wait_for(bot.communicate(), BOT_DURATION_S + 30)
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
        await context.close()
    log = output.decode(errors="replace")
    assert bot.returncode == 0, log + "\n" + "\n".join(console)
    received = json.loads(stats_path.read_text())["received"]
    from_browser = {e["kind"]: e for e in received if e["participant"] == "browser"}
    assert from_browser["video"]["frames_decoded"] > 0, received
    assert from_browser["audio"]["frames_decoded"] > 0, received


@pytest.fixture
async def lenient_browser(browser) -> AsyncIterator[object]:
    """Chromium as ``browser`` (which skips or fails without it), plus
    ``--ignore-certificate-errors``: Chromium checks a ``turns:`` server's certificate against
    its own trust store, where the test's self-signed one is not."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        lenient = await playwright.chromium.launch(
            executable_path=chromium_path(),
            headless=True,
            args=[*CHROMIUM_ARGS, "--ignore-certificate-errors"],
        )
        try:
            yield lenient
        finally:
            await lenient.close()


async def test_connectivity_page(lenient_browser, relay_server: Server) -> None:
    """The /connectivity page reports all four paths working, with round-trip times."""
    context = await lenient_browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{relay_server.url}/connectivity?autorun=1")
        await page.wait_for_function("() => window.connectivity.done", timeout=60_000)
        checks = await page.evaluate("() => window.connectivity.checks")
        assert [c["path"] for c in checks] == ["udp", "turn-udp", "turn-tcp", "turn-tls"]
        assert all(c["ok"] and c["rtt_ms"] > 0 and c["error"] is None for c in checks), checks
        assert await page.locator("#results tbody tr.ok").count() == 4
        assert await page.text_content("#status", timeout=DOM_TIMEOUT_MS) == "Every path works."
    finally:
        await context.close()
