"""benchmarks/load.py runs end to end on a tiny load and writes every field of its JSON.

Not a timing test: one publisher and one subscriber for 2 s against the real ``switchboard
serve`` subprocess, so that CI catches a broken benchmark (signalling drift, a hook that no
longer fits aiortc). The figures themselves are only checked for being there and plausible:
the subscriber received media, with no more loss than a loopback allows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.loadgen.janus import why_not_janus

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {
    "target", "scenario", "rooms", "publishers", "subscribers", "participants", "streams",
    "duration_s", "forwarded_packets", "forwarded_pps", "server_cpu", "server_us_per_packet",
    "server_cpu_per_stream", "loss_mean_pct", "loss_max_pct", "latency_p50_ms",
    "latency_p99_ms", "rss_idle_mb", "rss_mb", "rss_per_participant_kb",
    "rss_slope_mb_per_min", "rss_slope_last_half_mb_per_min", "join_ms", "generator_cpu",
    "generator_bottleneck", "server_wait", "generator_wait", "notes",
}  # fmt: skip


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "benchmarks/load.py", "--publishers", "1", "--subscribers", "1",
         "--duration", "2", "--no-pin", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_load_benchmark_tiny_run_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    chart = tmp_path / "load.png"
    done = _run("--json", str(out), "--chart", str(chart))
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert set(result) == FIELDS
    assert result["target"] == "switchboard" and result["streams"] == 1
    assert result["forwarded_packets"] > 100  # ~160 packets/s of VP8 + Opus for 2 s
    assert result["server_us_per_packet"] > 0 and result["server_cpu"] > 0
    assert result["loss_mean_pct"] is not None and result["loss_mean_pct"] < 5
    assert 0 < result["latency_p50_ms"] <= result["latency_p99_ms"]
    assert result["join_ms"] is not None and result["join_ms"] > 0
    assert set(report["machine"]) >= {"cpus", "python", "aiortc"}
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Switchboard" in done.stdout and "µs/pkt" in done.stdout


def test_compare_measures_the_baseline_and_janus_in_the_same_run(tmp_path: Path) -> None:
    """--compare: the MediaRelay baseline always, Janus when installed, and their ratios."""
    out = tmp_path / "load.json"
    done = _run("--compare", "--json", str(out))
    report = json.loads(out.read_text())
    by_target = {r["target"]: r for r in report["results"]}
    relay = by_target["mediarelay"]
    assert relay["forwarded_packets"] > 50 and relay["server_us_per_packet"] > 0
    assert relay["loss_mean_pct"] is None  # re-encoded: nothing to match payloads against
    kinds = {r["ratio"] for r in report["ratios"]}
    assert "mediarelay/switchboard" in kinds
    if why_not_janus() is None:
        janus = by_target["janus"]
        assert janus["forwarded_packets"] > 100 and janus["loss_mean_pct"] is not None
        assert "switchboard/janus" in kinds
    else:
        assert "janus" in report["skipped"] and "Janus VideoRoom" in done.stdout


def test_bad_options_are_refused_before_anything_runs(tmp_path: Path) -> None:
    """Each refused with argparse's exit 2 and a line naming the option: a value that was
    once ignored (``--subscribers 0`` started the whole sweep), silently dropped
    (``--targets foo``), or accepted into nonsense figures (negative counts and windows,
    ``nan``), and a ``--json`` path that could only fail after the whole run."""
    bad = [
        ("--targets", "switchboard,foo"),
        ("--subscribers", "-1"),
        ("--publishers", "0"),
        ("--rooms", "0"),
        ("--duration", "0"),
        ("--pacing-factor", "nan"),
        ("--janus-event-loops", "5"),
        ("--json", str(tmp_path)),
    ]
    for option, value in bad:
        done = subprocess.run(
            [sys.executable, "benchmarks/load.py", option, value],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, (option, value, done.stdout, done.stderr)
        assert option in done.stderr and "Traceback" not in done.stderr
