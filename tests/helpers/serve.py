"""``switchboard serve`` as a real subprocess for tests: ``--port 0`` on 127.0.0.1, ICE on
loopback, ready once it prints its ``Switchboard listening on URL`` line."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

READY = "Switchboard listening on "
START_TIMEOUT_S = 60.0


@dataclass
class Served:
    """A running server: ``lines`` is its stdout up to the ready line, ``url`` its base URL
    (no trailing slash); ``stderr`` collects its log (both pipes are drained, so neither fills).
    """

    process: asyncio.subprocess.Process
    lines: list[str]
    url: str
    stderr_lines: list[str] = field(default_factory=list)
    _drains: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    async def stop(self) -> None:
        """SIGTERM (unless it already exited), then wait for it and for its pipes."""
        if self.process.returncode is None:
            self.process.terminate()
        await asyncio.wait_for(self.process.wait(), START_TIMEOUT_S)
        await asyncio.wait_for(asyncio.gather(*self._drains), START_TIMEOUT_S)


async def _drain(stream: asyncio.StreamReader, into: list[str] | None) -> None:
    while line := await stream.readline():
        if into is not None:
            into.append(line.decode())


async def start_serve(*args: str) -> Served:
    """Start ``switchboard serve --port 0 --ice-address 127.0.0.1 ARGS`` and wait until it
    listens; raises AssertionError if it exits first, TimeoutError after 60 s."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "switchboard.signalling.cli", "serve", "--port", "0",
        "--ice-address", "127.0.0.1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    stderr_lines: list[str] = []
    stderr_drain = asyncio.ensure_future(_drain(process.stderr, stderr_lines))
    lines: list[str] = []
    async with asyncio.timeout(START_TIMEOUT_S):
        while not lines or not lines[-1].startswith(READY):
            raw = await process.stdout.readline()
            if not raw:
                await process.wait()
                await stderr_drain
                raise AssertionError(f"the server exited before listening: {''.join(stderr_lines)}")
            lines.append(raw.decode().rstrip("\n"))
    url = lines[-1][len(READY) :].split(" ", 1)[0].rstrip("/")
    drains = [stderr_drain, asyncio.ensure_future(_drain(process.stdout, None))]
    return Served(process, lines, url, stderr_lines, drains)


@asynccontextmanager
async def serving(*args: str) -> AsyncIterator[Served]:
    """``start_serve(*args)`` for the block, stopped after it."""
    served = await start_serve(*args)
    try:
        yield served
    finally:
        await served.stop()
