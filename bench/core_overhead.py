"""Core overhead: turns/s and latency through the whole pipeline with no model at all.

    .venv/bin/python -m bench.core_overhead [--runs 3] [--turns 2000]

Every turn of socialbot goes through the full pipeline (guard, commands, ordering,
plugins of the companion profile (its flood limit lifted), recall within the scope, the
fake generator's echo reply, then storage) on a real SQLite database in a temporary
folder, with the profile's durability setting, the fake emotion reader and the fake
embedder (the models are timed elsewhere). 1, 100 and 1,000 conversations send their
messages at once, each waiting for its reply before sending the next. The same workload
then runs through opsdroid (bench/opsdroid_echo.py) in a throw-away virtual environment
this script makes (``bench/.venv-opsdroid``, opsdroid pinned, with ``setuptools<81``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core import testing
from core.channel import CollectingChannel
from core.settings import PROJECT_BOTS_DIR, load_profile

HERE = Path(__file__).resolve().parent
OPSDROID_VENV = HERE / ".venv-opsdroid"
OPSDROID = ("opsdroid==0.31.0", "setuptools<81", "pytest")  # its test kit imports pytest
LEVELS = (1, 100, 1000)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def socialbot(concurrency: int, turns: int) -> dict[str, float]:
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    with tempfile.TemporaryDirectory(prefix="socialbot-bench-") as folder:
        async with testing.open_bot(
            Path(folder),
            plugins=profile.plugins,
            # the flood limit would rightly stop one person sending 2,000 messages at once
            plugin_settings={"moderation": {"flood_messages": 10**6}},
        ) as bot:
            latencies: list[float] = []
            answered = 0

            async def conversation(n: int, count: int) -> None:
                nonlocal answered
                for i in range(count):
                    started = time.perf_counter()
                    result = await bot.handle(
                        testing.message(f"hello {i}", user=f"user{n}"), CollectingChannel()
                    )
                    latencies.append(time.perf_counter() - started)
                    answered += result.reply is not None

            per = max(1, turns // concurrency)
            started = time.perf_counter()
            await asyncio.gather(*(conversation(n, per) for n in range(concurrency)))
            wall = time.perf_counter() - started
    return {
        "turns": len(latencies),
        "answered": answered,
        "turns_per_s": len(latencies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


def opsdroid_python() -> Path:
    """The throw-away environment's interpreter, made (once) if missing."""
    python = OPSDROID_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(OPSDROID_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *OPSDROID], check=True)
    return python


def opsdroid(concurrency: int, turns: int) -> dict[str, float]:
    out = subprocess.run(
        [str(opsdroid_python()), str(HERE / "opsdroid_echo.py"), str(concurrency), str(turns)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(runs: int, turns: int) -> dict[str, dict[int, dict[str, float]]]:
    raw: dict[str, dict[int, list[dict[str, float]]]] = {
        "socialbot": {n: [] for n in LEVELS},
        "opsdroid": {n: [] for n in LEVELS},
    }
    for _ in range(runs):  # interleaved, so both see the same machine state
        for n in LEVELS:
            raw["socialbot"][n].append(asyncio.run(socialbot(n, turns)))
            raw["opsdroid"][n].append(opsdroid(n, turns))
    return {
        name: {n: _medians(results) for n, results in levels.items()}
        for name, levels in raw.items()
    }


def _medians(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    result: Any = measure(args.runs, args.turns)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
