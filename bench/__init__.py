"""Speed, memory and effect benchmarks, and what they share."""

from __future__ import annotations

import contextlib
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_name() -> str:
    """The CPU's model name: timings differ by a third between this project's machines."""
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def commit(folder: Path = ROOT, *, length: int | None = None) -> str:
    """The commit checked out in ``folder`` (``git rev-parse --short``), or "unknown"."""
    short = "--short" if length is None else f"--short={length}"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "-C", str(folder), "rev-parse", short, "HEAD"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    return "unknown"
