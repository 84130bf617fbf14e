"""Fixtures of the browser tests: the real server in a subprocess, Debian's Chromium via Playwright.

Everything listens on and talks to 127.0.0.1 only. Nothing is fetched from the network: Playwright
drives the system's Chromium (``executable_path``), not a downloaded browser.

On failure, each page's screenshot goes to ``$SWITCHBOARD_TEST_ARTIFACTS`` (default
``/tmp/switchboard-browser-artifacts``) and the server log and the pages' console are printed
(pytest shows them with the failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import ifaddr
import pytest

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
SERVER_START_TIMEOUT_S = 20.0
SERVER_STOP_TIMEOUT_S = 10.0
ARTIFACTS_DIR = Path(
    os.environ.get("SWITCHBOARD_TEST_ARTIFACTS", "/tmp/switchboard-browser-artifacts")
)

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    # Remote audio elements play without a click (the page autojoins, no user gesture).
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that fixtures know whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


def switchboard_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "switchboard.signalling.cli", *args]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT (no trailing slash)
    data_dir: Path
    process: asyncio.subprocess.Process
    log: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        """The argv of a ``switchboard`` CLI subcommand (``join``, say)."""
        return switchboard_command(*args)


async def _drain(stream: asyncio.StreamReader, log: list[str]) -> None:
    """Keep reading the server's output into ``log`` so that its pipe never fills."""
    while line := await stream.readline():
        log.append(line.decode(errors="replace").rstrip())


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """``switchboard serve`` on a free port of 127.0.0.1, ready once it printed "listening".

    ``--port 0`` lets the server bind a free port, and its line ``Switchboard listening on
    http://127.0.0.1:PORT/`` tells which: no window for another process to take the port.
    """
    data_dir = tmp_path / "data"
    process = await asyncio.create_subprocess_exec(
        *switchboard_command(
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            *ice_address_args(),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    log: list[str] = []

    async def wait_until_listening() -> str:
        while line := await process.stdout.readline():
            log.append(line.decode(errors="replace").rstrip())
            if "listening" in log[-1]:
                match = LISTENING.search(log[-1])
                if match is None:
                    raise RuntimeError(f"no URL in {log[-1]!r}")
                return match.group(1)
        raise RuntimeError(f"the server exited ({await process.wait()}) before listening")

    try:
        url = await asyncio.wait_for(wait_until_listening(), SERVER_START_TIMEOUT_S)
    except (TimeoutError, RuntimeError) as exc:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        output = "\n".join(log)
        pytest.fail(f"the server did not start: {exc!r}\n--- server output ---\n{output}")
    server = Server(url=url, data_dir=data_dir, process=process, log=log)
    drain = asyncio.create_task(_drain(process.stdout, server.log))
    try:
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), SERVER_STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain, 5)
        if _failed(request):
            print("--- server output ---")
            print("\n".join(server.log[-300:]))


def chromium_path() -> str | None:
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    """Debian's Chromium, headless, with fake camera and microphone (playwright.async_api)."""
    executable = chromium_path()
    if executable is None:
        reason = "Chromium is not installed (apt-get install chromium); the browser tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[test]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


OpenPage = Callable[..., Awaitable[object]]


@pytest.fixture
async def open_call_page(
    browser, server: Server, request: pytest.FixtureRequest
) -> AsyncIterator[OpenPage]:
    """``await open_call_page(name, room, query="")``: a page, in a browser context of its own,
    that autojoins ``room`` as ``name`` (``query``: more URL parameters, e.g. ``&video=1280x720``);
    resolves once it has joined (``switchboard.participantId``)."""
    opened: list[tuple[str, object, list[str]]] = []

    async def open_page(name: str, room: str, query: str = ""):
        context = await browser.new_context(viewport={"width": 1100, "height": 800})
        page = await context.new_page()
        console: list[str] = []
        page.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
        page.on("pageerror", lambda exc: console.append(f"[pageerror] {exc}"))
        opened.append((name, page, console))
        await page.goto(f"{server.url}/?name={name}&room={room}&autojoin=1{query}")
        await page.wait_for_function(
            "() => window.switchboard && window.switchboard.participantId !== null",
            timeout=15_000,
        )
        return page

    try:
        yield open_page
    finally:
        failed = _failed(request)
        for name, page, console in opened:
            if failed:
                with contextlib.suppress(Exception):
                    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
                    path = ARTIFACTS_DIR / f"{request.node.name}-{name}.png"
                    await page.screenshot(path=str(path), timeout=5_000)
                    print(f"screenshot of {name}: {path}")
                with contextlib.suppress(Exception):
                    status = await page.text_content("#status", timeout=1_000)
                    print(f"--- {name}: status line: {status!r}")
                print(f"--- {name}: console ---")
                print("\n".join(console[-100:]))
            with contextlib.suppress(Exception):
                await page.context.close()


def ice_address_args() -> list[str]:
    """``--ice-address 127.0.0.1`` where the host has other addresses, none where it has only
    loopback (``make test`` runs in such a namespace): there the peers are tested with the
    defaults a user gets, and elsewhere no test packet goes beyond loopback either."""
    others = [
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if (isinstance(ip.ip, str) and not ip.ip.startswith("127."))
        or (isinstance(ip.ip, tuple) and ip.ip[0] != "::1")
    ]
    return ["--ice-address", "127.0.0.1"] if others else []
