"""Start Debian's Janus (1.1.x) with a generated configuration on 127.0.0.1 for the benchmark.

Janus gathers ICE candidates with libnice, which skips loopback interfaces: in the benchmark's
loopback-only network namespace it would have no candidate at all. A tiny ``LD_PRELOAD``
library, compiled here with the system's C compiler, clears ``IFF_LOOPBACK`` in what
``getifaddrs`` returns, so ``lo`` counts as an ordinary interface (only for the Janus process).
Only two modules are loaded: the HTTP transport (on 127.0.0.1, a free port) and the VideoRoom
plugin. ``event_loops = 1`` (one GLib loop for every handle) is Janus's cheapest mode per
forwarded packet on a small machine; ``event_loops = 0`` is its default thread per handle.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/janus", "/usr/lib/aarch64-linux-gnu/janus", "/usr/lib/janus")

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>

/* getifaddrs without IFF_LOOPBACK: libnice then gathers host candidates on lo. */
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = 0;
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


def find_janus() -> tuple[str, Path] | None:
    """(janus binary, its module directory), or None when Janus is not installed."""
    binary = shutil.which("janus")
    if binary is None:
        return None
    for lib in LIB_DIRS:
        if (Path(lib) / "plugins" / "libjanus_videoroom.so").is_file():
            return binary, Path(lib)
    return None


def why_not_janus() -> str | None:
    """Why Janus cannot run here (None when it can)."""
    if find_janus() is None:
        return "janus is not installed (scripts/ensure-janus installs Debian's package)"
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return "no C compiler to build the getifaddrs shim"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class JanusServer:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def write_config(workdir: Path, lib: Path, port: int, event_loops: int) -> Path:
    """Janus's configuration in ``workdir``: only the HTTP transport and the VideoRoom."""
    plugins, transports = workdir / "plugins", workdir / "transports"
    for folder, module in ((plugins, "plugins/libjanus_videoroom.so"),
                           (transports, "transports/libjanus_http.so")):  # fmt: skip
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / Path(module).name
        if not link.exists():
            link.symlink_to(lib / module)
    for empty in ("events", "loggers"):
        (workdir / empty).mkdir(exist_ok=True)
    (workdir / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{workdir}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{workdir / "events"}"
    loggers_folder = "{workdir / "loggers"}"
    debug_level = 3
    session_timeout = 120
    event_loops = {event_loops}
}}
certificates: {{
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "lo"
    ignore_mdns = true
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
    broadcast = false
}}
"""
    )
    (workdir / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "compact"
    base_path = "/janus"
    http = true
    port = {port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
}}
cors: {{
}}
"""
    )
    (workdir / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return workdir / "janus.jcfg"


def build_shim(workdir: Path) -> Path:
    source, library = workdir / "loopback_shim.c", workdir / "loopback_shim.so"
    source.write_text(SHIM_C)
    compiler = shutil.which("gcc") or shutil.which("cc") or "cc"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
        check=True,
        capture_output=True,
    )
    return library


async def start_janus(
    workdir: Path, event_loops: int = 1, preexec: Callable[[], None] | None = None
) -> JanusServer:
    """Start Janus and wait until its HTTP API answers ``info``; raises RuntimeError (with the
    tail of its log) if it does not within 20 s."""
    found = find_janus()
    if found is None:
        raise RuntimeError(why_not_janus())
    binary, lib = found
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    config = write_config(workdir, lib, port, event_loops)
    shim = build_shim(workdir)
    log_path = workdir / "janus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [binary, "-C", str(config), "-F", str(workdir), "-N", "-L", str(log_path), "-o"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"LD_PRELOAD": str(shim), "PATH": "/usr/bin:/bin"},
        preexec_fn=preexec,
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            if process.poll() is not None:
                break
            try:
                async with http.get(url + "/janus/info") as response:
                    if response.status == 200:
                        return JanusServer(process, url, log_path)
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)  # polling a starting daemon: there is no event to wait on
    tail = log_path.read_text(errors="replace")[-2000:]
    if process.poll() is None:
        process.kill()
    raise RuntimeError(f"Janus did not start: {tail}")
