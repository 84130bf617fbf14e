"""Load benchmark: the real server under P publishers x S subscribers x R rooms (issue 6, step 2).

``switchboard serve`` runs as a subprocess (temp data directory, 127.0.0.1). Load-generator
peers (``benchmarks/loadgen/``) are real aiortc peer connections in this process: they get a
token from ``POST /demo/token``, negotiate through the real signalling (docs/protocol.md), send
pre-encoded media (VP8 640x480 ~1 Mbps at 30 frames/s + Opus 20 ms, encoded once with PyAV
before the run, then only packetized) and count what they receive right after SRTP, without
parsing into objects, jitter buffer or decoding, so the generator stays cheap.

Measured, per scenario, over a window of ``--duration`` seconds after every stream flows:

* server CPU (user + system of the server process, all threads, from ``/proc/PID/stat``) in
  seconds per second, and in µs per forwarded packet; a *forwarded packet* is an RTP packet
  (VP8 or Opus, RTX excluded) received by a subscriber;
* loss per subscriber: packets its publishers sent in the window that it did not receive
  (matched by payload: the SFU rewrites headers, never payloads);
* added latency p50/p99: receive time minus send time of the same packet (send time taken
  just before SRTP in the publisher, receive time just after SRTP in the subscriber; both
  in this process, so it includes the generator's own SRTP and event-loop delays);
  publishers pace their video as libwebrtc does (``--pacing-factor``, default 2.5 x the
  clip's bitrate, ``benchmarks/loadgen/pacer.py``; audio unpaced), and the send time is when
  a packet leaves the pacer, so the figure is what the server adds;
* server RSS per participant ((RSS under load - RSS before the peers joined) / participants)
  and the RSS slope over the window (MB/min; meaningful with a long ``--duration``);
* join time: from the ``join`` request to the first *decoded* video frame, for one extra real
  aiortc subscriber that decodes (joining once the load runs);
* the generator's own CPU; a warning when it, not the server, may be the bottleneck.

The server is pinned to the last CPU and the generator to the others when there are at least
two. Everything stays on 127.0.0.1: run under ``scripts/in-netns`` (``make bench`` does), or
as root the script re-executes itself in a fresh network namespace.

``--compare`` adds, measured in the same run, (a) the MediaRelay baseline
(``benchmarks/mediarelay_baseline.py``: decode once, re-encode per subscriber) and (b) Janus's
VideoRoom (Debian's ``janus``, ``benchmarks/loadgen/janus.py``) when it is installed, and
prints the ratios Switchboard/Janus and MediaRelay/Switchboard.

Usage::

    python benchmarks/load.py [--quick] [--compare] [--duration S] [--json PATH] [--chart PNG]
    python benchmarks/load.py --publishers 1 --subscribers 1 --rooms 1 --duration 3 --json x.json
    python benchmarks/load.py --targets switchboard,janus --subscribers 20 --pacing-factor 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.mediastreams import MediaStreamError  # noqa: E402

from benchmarks.common import comma_list, cpu_model  # noqa: E402
from benchmarks.loadgen import janus as janus_runner  # noqa: E402
from benchmarks.loadgen.media import Clip, encode_audio, encode_video  # noqa: E402
from benchmarks.loadgen.pacer import DEFAULT_PACING_FACTOR  # noqa: E402
from benchmarks.loadgen.peers import JanusPeer, Ledger, PeerBase, SwitchboardPeer  # noqa: E402
from benchmarks.mediarelay_baseline import READY as RELAY_READY  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
READY_TIMEOUT_S = 60.0
WARMUP_S = 2.0
DRAIN_S = 0.5
GENERATOR_BUSY = 0.8  # of one core: the generator's single event loop is then the bottleneck
SWITCHBOARD, MEDIARELAY, JANUS = "switchboard", "mediarelay", "janus"
LABELS = {
    SWITCHBOARD: "Switchboard",
    MEDIARELAY: "MediaRelay baseline",
    JANUS: "Janus VideoRoom",
}


@dataclass(frozen=True)
class Scenario:
    """``rooms`` rooms, each with ``publishers`` publishing participants (which also receive the
    other publishers) and ``subscribers`` receive-only participants; named ``<R>r<P>p<S>s``."""

    name: str
    rooms: int
    publishers: int
    subscribers: int

    @property
    def participants(self) -> int:
        return self.rooms * (self.publishers + self.subscribers)

    @property
    def streams(self) -> int:
        """Publisher -> subscriber pairs (each carries audio and video)."""
        per_room = self.publishers * (self.publishers - 1) + self.publishers * self.subscribers
        return self.rooms * per_room


@dataclass
class Result:
    target: str
    scenario: str
    rooms: int
    publishers: int
    subscribers: int
    participants: int
    streams: int
    duration_s: float
    forwarded_packets: int
    forwarded_pps: float
    server_cpu: float  # CPU seconds per second
    server_us_per_packet: float | None
    server_cpu_per_stream: float  # of one core, per publisher -> subscriber pair
    loss_mean_pct: float | None
    loss_max_pct: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    rss_idle_mb: float
    rss_mb: float
    rss_per_participant_kb: float
    rss_slope_mb_per_min: float
    rss_slope_last_half_mb_per_min: float
    join_ms: float | None
    generator_cpu: float
    generator_bottleneck: bool
    server_wait: float  # s/s the server was runnable but waited for a CPU (machine noise)
    generator_wait: float
    notes: list[str] = field(default_factory=list)


# /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), seconds (proc(5))."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait_seconds(pid: int) -> float:
    """Time the threads of ``pid`` spent runnable but waiting for a CPU (schedstat, field 2),
    seconds: how much other processes on the machine delayed it."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            pass
    return total / 1e9


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_BYTES / 1e6


def cores() -> tuple[set[int], set[int]] | None:
    """(server CPUs, generator CPUs), or None with fewer than two CPUs."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[-1]}, set(available[:-1])


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t s, value) samples, per minute (0 for fewer than 3)."""
    return slope(samples) * 60 if len(samples) >= 3 else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# servers under test


@dataclass
class Target:
    name: str
    pid: int
    url: str
    stop: Callable[[], None]


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


async def _start_subprocess(
    argv: list[str], ready: str, cpus: set[int] | None, name: str
) -> Target:
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pin(cpus),
        text=True,
    )
    assert process.stdout is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    url = ""
    while not url:
        line = await asyncio.wait_for(
            loop.run_in_executor(None, process.stdout.readline), deadline - loop.time()
        )
        if not line:
            raise RuntimeError(f"{name} exited before listening (status {process.wait()})")
        if line.startswith(ready):
            url = line[len(ready) :].split()[0].rstrip("/")
    stdout = process.stdout

    def drain() -> None:  # keep the pipe from filling
        for _ in stdout:
            pass

    loop.run_in_executor(None, drain)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    return Target(name, process.pid, url, stop)


async def start_target(
    name: str, workdir: Path, cpus: set[int] | None, janus_event_loops: int = 1
) -> Target:
    if name == SWITCHBOARD:
        binary = ROOT / ".venv" / "bin" / "switchboard"
        argv = [str(binary)] if binary.exists() else [sys.executable, "-m",
                                                      "switchboard.signalling.cli"]  # fmt: skip
        data = workdir / "switchboard-data"
        return await _start_subprocess(
            [*argv, "serve", "--port", "0", "--host", "127.0.0.1", "--ice-address", "127.0.0.1",
             "--data-dir", str(data), "--log-level", "warning"],
            "Switchboard listening on ", cpus, name,
        )  # fmt: skip
    if name == MEDIARELAY:
        return await _start_subprocess(
            [sys.executable, "-m", "benchmarks.mediarelay_baseline", "--port", "0"],
            RELAY_READY,
            cpus,
            name,
        )
    server = await janus_runner.start_janus(
        workdir / "janus", event_loops=janus_event_loops, preexec=_pin(cpus)
    )
    return Target(name, server.process.pid, server.url, server.stop)


# one scenario against one target


class Run:
    """The peers of one scenario against one target, and their measurement."""

    def __init__(
        self,
        target: Target,
        scenario: Scenario,
        video: Clip,
        audio: Clip,
        pacing_factor: float = DEFAULT_PACING_FACTOR,
    ) -> None:
        self.target, self.scenario = target, scenario
        self.video, self.audio = video, audio
        self.pacing_factor = pacing_factor  # x the video clip's bitrate; 0: unpaced
        self.ledger = Ledger()
        # rooms[r] = (publishers, subscribers)
        self.rooms: list[tuple[list[PeerBase], list[PeerBase]]] = []
        self.notes: list[str] = []

    def _peer(self, name: str) -> PeerBase:
        peer: PeerBase
        if self.target.name == JANUS:
            peer = JanusPeer(self.target.url, self.ledger, name)
        else:
            peer = SwitchboardPeer(self.target.url, self.ledger, name)
        peer.pacing_factor = self.pacing_factor
        return peer

    @property
    def peers(self) -> list[PeerBase]:
        return [p for pubs, subs in self.rooms for p in pubs + subs]

    async def connect(self) -> None:
        s = self.scenario
        offset = 0
        for r in range(s.rooms):
            pubs = [self._peer(f"pub{r}-{i}") for i in range(s.publishers)]
            subs = [self._peer(f"sub{r}-{i}") for i in range(s.subscribers)]
            self.rooms.append((pubs, subs))
            if self.target.name == JANUS:
                room = 1000 + r
                creator = pubs[0]
                assert isinstance(creator, JanusPeer)
                await creator.create_room(room)
                for pub in pubs:
                    assert isinstance(pub, JanusPeer)
                    await pub.publish_in(room, self.video, self.audio, offset)
                    offset += 11
                feeds = {pub: pub.feed_id for pub in pubs if isinstance(pub, JanusPeer)}
                # Everyone subscribes to the room's other publishers (a lone publisher: none).
                await asyncio.gather(
                    *(
                        peer.subscribe_to(room, [f for p, f in feeds.items() if p is not peer])
                        for peer in pubs + subs
                        if isinstance(peer, JanusPeer) and s.publishers > (peer in pubs)
                    )
                )
            else:
                room_name = f"bench-{r}"
                for pub in pubs:
                    assert isinstance(pub, SwitchboardPeer)
                    await pub.join(room_name)
                    await pub.publish(self.video, self.audio, offset)
                    offset += 11
                await asyncio.gather(
                    *(sub.join(room_name) for sub in subs if isinstance(sub, SwitchboardPeer))
                )

    async def wait_flowing(self) -> None:
        """Until every receiving peer gets audio and video from each publisher of its room."""
        s = self.scenario
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while True:
            missing = []
            for pubs, subs in self.rooms:
                for peer in pubs + subs:
                    want = 2 * (s.publishers - (peer in pubs))
                    if len(peer.counter.ssrcs) < want:
                        missing.append(f"{peer.name} {len(peer.counter.ssrcs)}/{want}")
            if not missing:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"media not flowing to: {', '.join(missing[:5])}")
            await asyncio.sleep(0.1)  # polling counters the receive hooks bump

    async def join_time_ms(self) -> float | None:
        """Join a decoding aiortc subscriber to room 0; ms from join request to first frame."""
        name = "probe"
        peer = self._peer(name)
        peer.decode = True
        first = asyncio.get_running_loop().create_future()

        def on_video(track: Any) -> None:
            async def read() -> None:
                with contextlib.suppress(MediaStreamError):  # the probe left first
                    frame = await track.recv()
                    if not first.done():
                        first.set_result((time.perf_counter(), frame))

            asyncio.ensure_future(read())

        peer.on_video_track = on_video
        pubs, _ = self.rooms[0]
        if isinstance(peer, JanusPeer):
            await peer.subscribe_to(1000, [p.feed_id for p in pubs if isinstance(p, JanusPeer)])
        else:
            assert isinstance(peer, SwitchboardPeer)
            await peer.join("bench-0")
        try:
            done, _frame = await asyncio.wait_for(first, 15)
        except TimeoutError:
            self.notes.append("join probe: no decoded frame within 15 s")
            return None
        finally:
            await peer.close()
        return (done - peer.join_sent) * 1000

    async def measure(self, duration_s: float) -> Result:
        s, target = self.scenario, self.target
        peers = self.peers
        receivers = [
            (peer, [p for p in pubs if p is not peer]) for pubs, subs in self.rooms
            for peer in pubs + subs
        ]  # fmt: skip
        rss_samples: list[tuple[float, float]] = []
        # The generator's cyclic GC would pause its event loop mid-window (a late receive
        # time reads as server latency): collect and freeze now, none during the window.
        gc.collect()
        gc.freeze()
        gc.disable()
        t0 = time.perf_counter()
        self.ledger.open_window(t0)
        cpu0, gen0 = cpu_seconds(target.pid), time.process_time()
        wait0 = runqueue_wait_seconds(target.pid), runqueue_wait_seconds(os.getpid())
        recv0 = sum(p.counter.received for p in peers)
        while (now := time.perf_counter()) < t0 + duration_s:
            rss_samples.append((now - t0, rss_mb(target.pid)))
            await asyncio.sleep(min(0.5, t0 + duration_s - now))  # sampling period
        t1 = time.perf_counter()
        cpu1, gen1 = cpu_seconds(target.pid), time.process_time()
        wait1 = runqueue_wait_seconds(target.pid), runqueue_wait_seconds(os.getpid())
        recv1 = sum(p.counter.received for p in peers)
        self.ledger.close_window(t1)
        await asyncio.sleep(DRAIN_S)  # packets sent just before t1 are still on their way
        gc.enable()
        gc.unfreeze()
        elapsed = t1 - t0
        forwarded = recv1 - recv0
        server_cpu = (cpu1 - cpu0) / elapsed
        generator_cpu = (gen1 - gen0) / elapsed
        losses, delays = [], []
        for peer, sources in receivers:
            sent = sum(p.counter.sent_window for p in sources)
            if sent:
                losses.append(max(0.0, 1 - peer.counter.received_window / sent) * 100)
            delays.extend(peer.counter.delays_ms)
        matched = bool(delays)
        if not matched and target.name == MEDIARELAY:
            self.notes.append("re-encoded media: no loss or latency by payload match")
        rss_now = statistics.fmean(v for _, v in rss_samples) if rss_samples else 0.0
        bottleneck = generator_cpu > GENERATOR_BUSY
        return Result(
            target=target.name,
            scenario=s.name,
            rooms=s.rooms,
            publishers=s.publishers,
            subscribers=s.subscribers,
            participants=s.participants,
            streams=s.streams,
            duration_s=round(elapsed, 2),
            forwarded_packets=forwarded,
            forwarded_pps=round(forwarded / elapsed, 1),
            server_cpu=round(server_cpu, 4),
            server_us_per_packet=round(server_cpu / forwarded * elapsed * 1e6, 2)
            if forwarded
            else None,
            server_cpu_per_stream=round(server_cpu / max(1, s.streams), 5),
            loss_mean_pct=round(statistics.fmean(losses), 3) if losses and matched else None,
            loss_max_pct=round(max(losses), 3) if losses and matched else None,
            latency_p50_ms=round(percentile(delays, 0.5), 3) if delays else None,
            latency_p99_ms=round(percentile(delays, 0.99), 3) if delays else None,
            rss_idle_mb=0.0,
            rss_mb=round(rss_now, 1),
            rss_per_participant_kb=0.0,
            rss_slope_mb_per_min=round(slope_per_min(rss_samples), 3),
            rss_slope_last_half_mb_per_min=round(
                slope_per_min(rss_samples[len(rss_samples) // 2 :]), 3
            ),
            join_ms=None,
            generator_cpu=round(generator_cpu, 3),
            generator_bottleneck=bottleneck,
            server_wait=round((wait1[0] - wait0[0]) / elapsed, 4),
            generator_wait=round((wait1[1] - wait0[1]) / elapsed, 4),
        )

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers), return_exceptions=True)


async def run_scenario(
    target_name: str,
    scenario: Scenario,
    video: Clip,
    audio: Clip,
    duration_s: float,
    pinning: tuple[set[int], set[int]] | None,
    workdir: Path,
    janus_event_loops: int = 1,
    pacing_factor: float = DEFAULT_PACING_FACTOR,
) -> Result:
    target = await start_target(
        target_name, workdir, pinning[0] if pinning else None, janus_event_loops
    )
    run = Run(target, scenario, video, audio, pacing_factor)
    try:
        await asyncio.sleep(0.5)  # let the fresh server settle before the idle RSS sample
        rss_idle = rss_mb(target.pid)
        await run.connect()
        await run.wait_flowing()
        await asyncio.sleep(WARMUP_S)  # key frames, renegotiations and RTCP settle
        join_ms = None
        if target_name != MEDIARELAY:
            join_ms = await run.join_time_ms()
        result = await run.measure(duration_s)
        result.rss_idle_mb = round(rss_idle, 1)
        result.rss_per_participant_kb = round(
            (result.rss_mb - rss_idle) * 1000 / max(1, scenario.participants), 1
        )
        result.join_ms = round(join_ms, 1) if join_ms is not None else None
        result.notes = run.notes
        return result
    finally:
        await run.close()
        target.stop()


# output


def format_table(results: list[Result]) -> str:
    head = (
        f"{'target':<20} {'scenario':<9} {'streams':>7} {'fwd pkt/s':>9} {'srv CPU':>8} "
        f"{'µs/pkt':>7} {'loss% avg/max':>14} {'lat p50/p99 ms':>15} {'RSS/part':>9} "
        f"{'MB/min':>7} {'join ms':>7} {'gen CPU':>7} {'waits':>9}"
    )
    lines = [head]

    def opt(value: float | None, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    for r in results:
        loss = f"{opt(r.loss_mean_pct, '.2f')}/{opt(r.loss_max_pct, '.2f')}"
        lat = f"{opt(r.latency_p50_ms, '.2f')}/{opt(r.latency_p99_ms, '.2f')}"
        lines.append(
            f"{LABELS[r.target]:<20} {r.scenario:<9} {r.streams:>7} {r.forwarded_pps:>9.0f} "
            f"{r.server_cpu * 100:>7.1f}% {opt(r.server_us_per_packet, '.1f'):>7} {loss:>14} "
            f"{lat:>15} {r.rss_per_participant_kb / 1000:>7.2f}MB "
            f"{r.rss_slope_mb_per_min:>7.2f} {opt(r.join_ms, '.0f'):>7} "
            f"{r.generator_cpu * 100:>6.1f}% "
            f"{r.server_wait * 100:>4.1f}/{r.generator_wait * 100:<4.1f}"
            + (" !" if r.generator_bottleneck else "")
        )
    return "\n".join(lines)


def pacing_line(pacing_factor: float, video: Clip) -> str:
    """How the publishers paced their video, for the line above the table."""
    if pacing_factor <= 0:
        return "pacing: none (--pacing-factor 0): each video frame sent back to back"
    rate = pacing_factor * video.bitrate_bps / 1e6
    return (f"pacing: video at {pacing_factor:g} x the clip's bitrate ({rate:.2f} Mbps), "
            "5 ms budget, audio unpaced")  # fmt: skip


def marginal_cpu_per_subscriber(results: list[Result], target: str) -> float | None:
    """Least-squares slope of server CPU (cores) against subscribers over ``target``'s
    one-room, one-publisher runs: what one more subscriber costs, fixed costs left out."""
    points = [
        (float(r.subscribers), r.server_cpu) for r in results
        if r.target == target and r.rooms == 1 and r.publishers == 1
    ]  # fmt: skip
    if len({x for x, _ in points}) < 2:
        return None
    return slope(points)


def ratios(results: list[Result]) -> list[dict[str, Any]]:
    """Switchboard/Janus and MediaRelay/Switchboard, each from runs of the same scenario in
    this run: µs per forwarded packet, CPU per publisher->subscriber stream; and the ratio
    of marginal CPU per added subscriber (``scenario`` "marginal")."""
    by = {(r.target, r.scenario): r for r in results}
    out: list[dict[str, Any]] = []
    for (target, scenario), other in by.items():
        ours = by.get((SWITCHBOARD, scenario))
        if ours is None or target == SWITCHBOARD or not ours.server_us_per_packet:
            continue
        if not other.server_us_per_packet:
            continue
        num, den = (ours, other) if target == JANUS else (other, ours)
        assert num.server_us_per_packet and den.server_us_per_packet
        out.append({
            "ratio": "switchboard/janus" if target == JANUS else "mediarelay/switchboard",
            "scenario": scenario,
            "us_per_packet": round(num.server_us_per_packet / den.server_us_per_packet, 2),
            "cpu_per_stream": round(num.server_cpu_per_stream
                                    / max(den.server_cpu_per_stream, 1e-9), 2),
        })  # fmt: skip
    marginal = {
        t: marginal_cpu_per_subscriber(results, t) for t in (SWITCHBOARD, JANUS, MEDIARELAY)
    }
    ours_m = marginal[SWITCHBOARD]
    for target, name in ((JANUS, "switchboard/janus"), (MEDIARELAY, "mediarelay/switchboard")):
        theirs = marginal[target]
        if ours_m and theirs and ours_m > 0 and theirs > 0:
            share = ours_m / theirs if target == JANUS else theirs / ours_m
            out.append({
                "ratio": name, "scenario": "marginal", "cpu_per_subscriber": round(share, 2),
                "switchboard_cores_per_subscriber": round(ours_m, 5),
                f"{target}_cores_per_subscriber": round(theirs, 5),
            })  # fmt: skip
    return out


def write_chart(results: list[Result], path: Path) -> None:
    """µs of server CPU per forwarded packet and loss against subscribers (1-publisher runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, loss_ax) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=72)
    for target in (SWITCHBOARD, JANUS, MEDIARELAY):
        points = sorted(
            (r.subscribers, r) for r in results
            if r.target == target and r.rooms == 1 and r.publishers == 1
        )  # fmt: skip
        if not points:
            continue
        xs = [x for x, _ in points]
        cpu_ax.plot(xs, [r.server_us_per_packet for _, r in points], "o-", label=LABELS[target])
        loss = [(x, r.loss_mean_pct) for x, r in points if r.loss_mean_pct is not None]
        if loss:
            loss_ax.plot(*zip(*loss, strict=True), "o-", label=LABELS[target])
    cpu_ax.axhline(12, color="grey", linestyle=":", linewidth=1, label="target 12 µs")
    cpu_ax.set(xlabel="subscribers (1 publisher)", ylabel="server µs CPU / forwarded packet")
    cpu_ax.set_yscale("log")
    loss_ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="target 0.1 %")
    plotted = [r.loss_mean_pct for r in results if r.rooms == 1 and r.publishers == 1]
    top = max([0.2] + [loss * 1.2 for loss in plotted if loss is not None])
    loss_ax.set_ylim(-top * 0.05, top)
    loss_ax.set(xlabel="subscribers (1 publisher)", ylabel="mean loss per subscriber, %")
    for ax in (cpu_ax, loss_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def machine() -> dict[str, Any]:
    import aiortc

    model = cpu_model()
    janus_version = ""
    if shutil.which("janus"):
        out = subprocess.run(["janus", "--help"], capture_output=True, text=True, timeout=10)
        janus_version = out.stdout.splitlines()[0] if out.stdout else ""
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiortc": aiortc.__version__,
        "janus": janus_version,
        "loadavg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


# main


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    if _custom(args):
        p = 1 if args.publishers is None else args.publishers
        s = 0 if args.subscribers is None else args.subscribers
        r = 1 if args.rooms is None else args.rooms
        return [Scenario(f"{r}r{p}p{s}s", r, p, s)]
    sweep = [4, 10, 40] if args.quick else [4, 10, 40, 80]
    return [
        Scenario("1r1p20s", 1, 1, 20),
        Scenario("4r4p0s", 4, 4, 0),
        *(Scenario(f"1r1p{n}s", 1, 1, n) for n in sweep),
        Scenario("1r1p2s", 1, 1, 2),
    ]


# The MediaRelay baseline re-encodes per subscriber (~0.1 core each): it runs only where one
# core holds it, at two points for its marginal cost; Switchboard runs there too.
BASELINE_SCENARIOS = ("1r1p2s", "1r1p4s")


def targets_for(scenario: Scenario, targets: list[str], custom: bool) -> list[str]:
    if custom:
        return targets
    if scenario.name == "1r1p2s":
        return (
            [t for t in targets if t in (SWITCHBOARD, MEDIARELAY)] if MEDIARELAY in targets else []
        )
    return [t for t in targets if t != MEDIARELAY or scenario.name in BASELINE_SCENARIOS]


async def main_async(args: argparse.Namespace) -> int:
    from switchboard.sfu import aiortc_glue

    aiortc_glue.use_host_addresses(["127.0.0.1"])  # aioice skips loopback by itself
    callback_errors: list[str] = []

    def on_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        # aiortc/aioice callbacks that raise (a malformed datagram, a peer closing mid-way):
        # counted and reported once at the end, not a traceback in the middle of the table.
        exc = context.get("exception")
        callback_errors.append(f"{type(exc).__name__}: {exc}" if exc else context["message"])

    asyncio.get_running_loop().set_exception_handler(on_loop_error)
    pinning = None if args.no_pin else cores()
    if pinning:
        os.sched_setaffinity(0, pinning[1])
    info = machine()
    pinned = f"server CPUs {pinning[0]}, generator CPUs {pinning[1]}" if pinning else "none"
    print(f"encoding the clips once (VP8 640x480 ~1 Mbps, Opus); pinning: {pinned}", flush=True)
    video, audio = encode_video(4.0), encode_audio(4.0)
    wanted = list(args.targets) if args.targets else [SWITCHBOARD]
    if args.compare and not args.targets:
        wanted += [MEDIARELAY, JANUS]
    targets = [t for t in (SWITCHBOARD, MEDIARELAY, JANUS) if t in wanted]
    skipped: dict[str, str] = {}
    why = janus_runner.why_not_janus()
    if JANUS in targets and why is not None:
        targets.remove(JANUS)
        skipped[JANUS] = why
    results: list[Result] = []
    plan = scenarios(args)
    with tempfile.TemporaryDirectory(prefix="switchboard-load-") as tmp:
        for scenario in plan:
            custom = _custom(args)
            for target in targets_for(scenario, targets, custom):
                print(f"-- {LABELS[target]}: {scenario.name} ({scenario.participants} "
                      f"participants, {args.duration:g} s, pacing factor "
                      f"{args.pacing_factor:g})", flush=True)  # fmt: skip
                workdir = Path(tmp) / f"{target}-{scenario.name}"
                workdir.mkdir()
                try:
                    result = await run_scenario(
                        target, scenario, video, audio, args.duration, pinning, workdir,
                        args.janus_event_loops, args.pacing_factor,
                    )  # fmt: skip
                except Exception as exc:  # one target failing must not lose the others' figures
                    print(f"   failed: {type(exc).__name__}: {exc}", flush=True)
                    skipped.setdefault(target, f"{scenario.name}: {type(exc).__name__}: {exc}")
                    continue
                results.append(result)
                print(format_table([result]).splitlines()[1], flush=True)
                if result.generator_bottleneck:
                    print(f"WARNING: the load generator used {result.generator_cpu:.0%} of its "
                          "CPU: it, not the server, may limit this run", flush=True)  # fmt: skip
    print()
    print(pacing_line(args.pacing_factor, video))
    print(format_table(results))
    found = ratios(results)
    for ratio in found:
        if ratio["scenario"] == "marginal":
            print(f"{ratio['ratio']} (marginal CPU per added subscriber, from the 1-publisher "
                  f"runs): {ratio['cpu_per_subscriber']}x")  # fmt: skip
        else:
            print(f"{ratio['ratio']} ({ratio['scenario']}): {ratio['us_per_packet']}x per "
                  f"forwarded packet, {ratio['cpu_per_stream']}x CPU per stream")  # fmt: skip
    if callback_errors:
        print(f"generator: {len(callback_errors)} exceptions in event-loop callbacks, e.g. "
              f"{callback_errors[0]}")  # fmt: skip
    for target, why in skipped.items():
        print(f"{LABELS[target]}: left out or failed: {why}")
    print(
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}, aiortc "
        f"{info['aiortc']}{', ' + info['janus'] if info['janus'] else ''}; "
        f"load average at start {info['loadavg_at_start'][0]:.2f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "results": [asdict(r) for r in results], "ratios": found,
            "skipped": skipped, "machine": info, "generator_callback_errors": callback_errors[:20],
            "settings": {"duration_s": args.duration, "quick": args.quick,
                         "video": {"codec": "VP8", "size": "640x480",
                                   "bitrate_bps": round(video.bitrate_bps)},
                         "audio": {"codec": "opus", "bitrate_bps": round(audio.bitrate_bps)},
                         "pinning": [sorted(c) for c in pinning] if pinning else None,
                         "janus_event_loops": args.janus_event_loops,
                         "pacing_factor": args.pacing_factor,
                         "pacing_rate_bps": round(args.pacing_factor * video.bitrate_bps)},
        }, indent=2))  # fmt: skip
    if args.chart and results:
        write_chart(results, args.chart)
        print(f"chart: {args.chart}")
    return 0 if results else 1


def _in_loopback_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def _custom(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.publishers, args.subscribers, args.rooms))


def _number(kind: type[int] | type[float], least: float, above: bool = False) -> Any:
    """An argparse ``type``: a finite number ``>= least`` (``> least`` with ``above``)."""

    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number < least or (above and number == least):
            bound = f"> {least:g}" if above else f">= {least:g}"
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{value!r}: {what} {bound} is needed")
        return number

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs (make bench)")
    parser.add_argument("--compare", action="store_true", help="add MediaRelay and Janus")
    parser.add_argument(
        "--duration", type=_number(float, 0, above=True), help="measurement window per run, s"
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--chart", type=Path, help="write the PNG chart")
    parser.add_argument(
        "--publishers", type=_number(int, 1), help="one custom scenario: P publishers (>= 1)"
    )
    parser.add_argument(
        "--subscribers", type=_number(int, 0), help="... S receive-only participants (>= 0)"
    )
    parser.add_argument("--rooms", type=_number(int, 1), help="... in R rooms (>= 1)")
    parser.add_argument(
        "--targets",
        type=comma_list((SWITCHBOARD, MEDIARELAY, JANUS)),
        help=f"comma-separated, instead of --compare's all: {SWITCHBOARD},{MEDIARELAY},{JANUS}",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to CPUs")
    parser.add_argument(
        "--janus-event-loops",
        type=int,
        choices=(0, 1),
        default=1,
        help="Janus's event_loops: 1 (default, its cheapest per packet here) or 0 (its own "
        "default, a thread per handle)",
    )
    parser.add_argument(
        "--pacing-factor",
        type=_number(float, 0),
        default=DEFAULT_PACING_FACTOR,
        help="publishers send video at most at F x the clip's bitrate, as libwebrtc's pacer "
        f"(default {DEFAULT_PACING_FACTOR:g}, its default); 0: unpaced, frames back to back",
    )
    args = parser.parse_args()
    for option, path in (("--json", args.json), ("--chart", args.chart)):
        if path is not None and path.is_dir():  # say so now, not after the whole run
            parser.error(f"{option} {path}: a directory, not a file")
    if args.duration is None:
        args.duration = 6.0 if args.quick else 20.0
    if (
        not _in_loopback_namespace()
        and os.environ.get("SWITCHBOARD_NO_NETNS") != "1"
        and os.geteuid() == 0
        and shutil.which("unshare")
        and shutil.which("ip")
    ):  # keep every packet on 127.0.0.1, as scripts/in-netns does
        os.execvp(
            "unshare",
            ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             sys.executable, *sys.argv],
        )  # fmt: skip
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
