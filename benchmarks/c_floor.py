"""The C floor of forwarding: CPU time per forwarded SRTP packet of a tiny C SFU loop, in µs.

Issue 6 measures the Python hot path against "≤ 2× the C floor measured in the same run".
``benchmarks/c_floor/floor.c`` is that floor: one publisher's stream forwarded to N
subscribers, each with its own libsrtp outbound session (Debian's libsrtp2, the library
pylibsrtp wraps; random keys; ``SRTP_AEAD_AES_256_GCM``, as in ``hot_path.py``) and its own
loopback sink. Per received packet: ``srtp_unprotect`` (ingress ``unprotect``, the default;
``none`` leaves it out); per subscriber: marker/PT, seq, ts and abs-send-time written into the
subscriber's preallocated buffer (its SSRC and RFC 8285 extension block are prebuilt), the
payload copied, ``srtp_protect`` in place, and the send. Variants:

* ``sendto``: one UDP socket per subscriber (as one ICE socket per transport), one
  ``sendto`` per forwarded packet, the way Switchboard sends;
* ``sendto_shared``: one UDP socket for all subscribers (as mediasoup's WebRtcServer shares
  one port), one ``sendto`` per forwarded packet;
* ``sendmmsg_shared``: the shared socket, one ``sendmmsg`` per received packet for its N
  copies. ``sendmmsg`` sends on one socket only, so batching one packet's fan-out needs the
  shared socket;
* ``send_connected``: one UDP socket per subscriber, ``connect``-ed to its sink, one ``send``
  per forwarded packet (no route lookup per packet; ``hot_path.py``'s Python reference
  ``srtp_protect_sendto`` sends so, on one socket);
* ``no_send``: all of the above but the send. Not a forwarding floor: its difference to the
  others is what the syscall and the kernel's loopback delivery cost. (Its ``delivered`` is
  100 % by definition.)

The figure is the process's CPU time (``CLOCK_PROCESS_CPUTIME_ID``, user + system, so the
kernel's loopback delivery to the sinks counts, as ``time.process_time`` in ``hot_path.py``)
per forwarded packet. Not timed: the publisher's packetising and encryption, and draining the
sinks every chunk (≤ 1,000 packets a sink), which counts deliveries (``delivered``).
Video: 1,100-byte payloads (1,124 bytes plain with header and extensions, 1,140 with the GCM
tag); audio: 100-byte payloads (124 / 140).

The program is built with ``gcc`` at run time into ``~/.cache/switchboard/c_floor/``, named
after the source's hash. Without ``gcc`` (Debian's ``gcc``) or libsrtp2's headers (Debian's
``libsrtp2-dev``; ``scripts/ensure-libsrtp-dev`` installs it) the command exits with 2 and
says what is missing; ``measure_floor`` returns None.

Usage: ``python benchmarks/c_floor.py [--quick] [--json PATH] [--kinds K,...]
[--subscribers N,...] [--variant V,...] [--ingress unprotect|none]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Settings, comma_list, cpu_model  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "c_floor" / "floor.c"
KINDS = ("audio", "video")
VARIANTS = ("sendto", "sendto_shared", "sendmmsg_shared", "send_connected", "no_send")
INGRESSES = ("unprotect", "none")
RUN_TIMEOUT_S = 120.0
SRTP_PROFILE = "SRTP_AEAD_AES_256_GCM"  # what floor.c uses (two aiortc peers negotiate it)


class FloorUnavailable(RuntimeError):
    """The floor cannot be built here; the message says what to install."""


QUICK = Settings(subscribers=(1, 10, 50), sends_per_rep=10000, min_packets=200, repetitions=11)
FULL = Settings(subscribers=(1, 10, 50), sends_per_rep=40000, min_packets=800, repetitions=21)


def _compiler() -> str | None:
    return shutil.which("gcc") or shutil.which("cc")


def _cache_dir() -> Path:
    """``$XDG_CACHE_HOME/switchboard/c_floor`` (``~/.cache/...``): the user's own directory,
    not a guessable name in /tmp; a new temporary directory when it cannot be created."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    try:
        path = root / "switchboard" / "c_floor"
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        return Path(tempfile.mkdtemp(prefix="switchboard-c-floor-"))


def build_floor(cache_dir: Path | None = None) -> Path:
    """Compile ``floor.c`` (once per source version) and return the executable's path.

    Raises ``FloorUnavailable`` when there is no C compiler or no libsrtp2 headers."""
    compiler = _compiler()
    if compiler is None:
        raise FloorUnavailable("no C compiler: install Debian's gcc (apt-get install gcc)")
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + compiler.encode()).hexdigest()[:16]
    base = cache_dir or _cache_dir()
    binary = base / f"floor-{digest}"
    if binary.exists():
        return binary
    partial = base / f".floor-{digest}-{os.getpid()}"
    done = subprocess.run(
        [compiler, "-O2", "-Wall", "-o", str(partial), str(SOURCE), "-lsrtp2"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        if "srtp2/srtp.h" in done.stderr or "-lsrtp2" in done.stderr:
            raise FloorUnavailable(
                "libsrtp2's headers are missing: install Debian's libsrtp2-dev "
                "(scripts/ensure-libsrtp-dev)"
            )
        raise FloorUnavailable(f"building {SOURCE.name} failed:\n{done.stderr.strip()}")
    partial.replace(binary)  # atomic: a concurrent build leaves a whole file too
    return binary


def why_not_floor() -> str | None:
    """None when the floor can be built here, else what is missing."""
    try:
        build_floor()
    except FloorUnavailable as exc:
        return str(exc)
    return None


def run_floor(
    binary: Path,
    kind: str,
    subscribers: int,
    variant: str,
    packets: int,
    repetitions: int,
    ingress: str = "unprotect",
    debug: bool = False,
) -> dict[str, Any]:
    """Run the floor once; returns its JSON object (``min_us``, ``median_us``, ``max_us``,
    ``samples_us``, ``sent``, ``received``, ``expected``..., and with ``debug`` the SRTP keys
    and each sink's last packet). ``packets`` received packets per repetition."""
    argv = [
        str(binary),
        "--kind",
        kind,
        "--subscribers",
        str(subscribers),
        "--variant",
        variant,
        "--packets",
        str(packets),
        "--repetitions",
        str(repetitions),
        "--ingress",
        ingress,
    ]
    if debug:
        argv.append("--debug")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"{binary.name} failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(
    settings: Settings,
    kinds: Iterable[str] = KINDS,
    variants: Iterable[str] = VARIANTS,
    ingress: str = "unprotect",
    binary: Path | None = None,
) -> list[dict[str, Any]]:
    """Every kind × N × variant (variants next to each other for each kind and N); one
    result dict each: kind, subscribers, variant, ingress, min/median/max µs, delivered,
    plain and SRTP packet sizes."""
    binary = binary or build_floor()
    variants = tuple(variants)
    results: list[dict[str, Any]] = []
    for kind in kinds:
        for n in settings.subscribers:
            packets = max(settings.min_packets, settings.sends_per_rep // n)
            for variant in variants:
                out = run_floor(binary, kind, n, variant, packets, settings.repetitions, ingress)
                results.append(
                    {
                        "kind": kind,
                        "subscribers": n,
                        "variant": variant,
                        "ingress": ingress,
                        "min_us": round(out["min_us"], 2),
                        "median_us": round(out["median_us"], 2),
                        "max_us": round(out["max_us"], 2),
                        "delivered": out["received"] / out["expected"],
                        "plain_bytes": out["plain_bytes"],
                        "srtp_bytes": out["srtp_bytes"],
                    }
                )
    return results


def measure_floor(
    kinds: Iterable[str] = KINDS,
    subscribers: Iterable[int] = (1, 10, 50),
    quick: bool = True,
    variants: Iterable[str] = VARIANTS,
    ingress: str = "unprotect",
    settings: Settings | None = None,
) -> list[dict[str, Any]] | None:
    """The floor as a reference for other benchmarks (``hot_path.py``), measured now, with
    ``settings`` (default: ``QUICK`` or ``FULL`` for ``subscribers``).

    Returns the result dicts of ``measure``, or None (after saying why on stderr) when the
    floor cannot be built here."""
    if settings is None:
        base = QUICK if quick else FULL
        settings = Settings(
            tuple(subscribers), base.sends_per_rep, base.min_packets, base.repetitions
        )
    try:
        binary = build_floor()
    except FloorUnavailable as exc:
        print(f"c_floor: left out: {exc}", file=sys.stderr)
        return None
    return measure(settings, kinds, variants, ingress, binary)


def machine(settings: Settings) -> dict[str, Any]:
    """What the figures were measured on."""
    processor = cpu_model()
    return {
        "cpus": os.cpu_count(),
        "processor": processor,
        "platform": platform.platform(),
        "srtp_profile": SRTP_PROFILE,
        "libsrtp": "Debian libsrtp2",
        "repetitions": settings.repetitions,
        "sends_per_rep": settings.sends_per_rep,
    }


def format_table(document: dict[str, Any]) -> str:
    """The results as a plain-text table; ``×first`` is each row's median over the first
    variant's of the same kind and N (measured side by side)."""
    first: dict[tuple[str, int], dict[str, Any]] = {}
    for r in document["results"]:
        first.setdefault((r["kind"], r["subscribers"]), r)
    lines = [
        "C floor: µs of CPU per forwarded packet (min / median / max over repetitions)",
        f"{'kind':<6} {'N':>3} {'variant':<16} {'ingress':<9} {'min':>8} {'median':>8} "
        f"{'max':>8} {'×first':>7} {'delivered':>9}",
    ]
    for r in document["results"]:
        base = first[(r["kind"], r["subscribers"])]["median_us"]
        lines.append(
            f"{r['kind']:<6} {r['subscribers']:>3} {r['variant']:<16} {r['ingress']:<9} "
            f"{r['min_us']:>8.2f} {r['median_us']:>8.2f} {r['max_us']:>8.2f} "
            f"{r['median_us'] / base:>7.2f} {r['delivered']:>9.1%}"
        )
    m = document["machine"]
    lines.append(
        f"{m['cpus']} CPUs ({m['processor']}), {m['srtp_profile']} ({m['libsrtp']}), "
        f"{m['repetitions']} repetitions"
    )
    return "\n".join(lines)


def _counts(value: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return counts


def main(argv: list[str] | None = None) -> int:
    """Command line: build, measure, print the table, optionally write the JSON document.
    Exit code 2 when the floor cannot be built here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer packets (~10 s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    parser.add_argument("--kinds", type=comma_list(KINDS), default=KINDS, help="audio,video")
    parser.add_argument(
        "--subscribers", type=_counts, default=None, help="N values (default 1,10,50)"
    )
    parser.add_argument(
        "--variant",
        type=comma_list(VARIANTS),
        default=VARIANTS,
        help="send variants, comma-separated, side by side (default: all)",
    )
    parser.add_argument(
        "--ingress",
        choices=INGRESSES,
        default="unprotect",
        help="srtp_unprotect each received packet (default) or not",
    )
    args = parser.parse_args(argv)
    if args.json is not None and args.json.is_dir():  # say so now, not after the whole run
        parser.error(f"--json {args.json}: a directory, not a file")
    settings = QUICK if args.quick else FULL
    if args.subscribers is not None:
        settings = Settings(
            args.subscribers, settings.sends_per_rep, settings.min_packets, settings.repetitions
        )
    try:
        binary = build_floor()
    except FloorUnavailable as exc:
        print(f"c_floor: cannot run: {exc}", file=sys.stderr)
        return 2
    document = {
        "results": measure(settings, args.kinds, args.variant, args.ingress, binary),
        "machine": machine(settings),
    }
    print(format_table(document))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
