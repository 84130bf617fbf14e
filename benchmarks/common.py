"""Small helpers the benchmarks share: how much to measure, command-line lists, and what
machine they ran on."""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``sends_per_rep`` forwarded packets per repetition (received
    packets = that / N, at least ``min_packets``), ``repetitions`` samples per figure."""

    subscribers: tuple[int, ...]
    sends_per_rep: int
    min_packets: int
    repetitions: int


def comma_list(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    """An argparse ``type``: a comma-separated list of names, each one of ``allowed``."""

    def parse(value: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in value.split(",") if name.strip())
        if not names or any(name not in allowed for name in names):
            raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(allowed)}")
        return names

    return parse


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
