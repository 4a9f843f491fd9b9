"""Peak memory (RSS) of ``socialbot run``: idle, then answering 8 conversations at once.

    .venv/bin/python -m bench.memory_rss

``socialbot run`` starts as an operator runs it (the default companion profile, the
default engine, emotion reader and embedder) with a Telegram token, against the loopback
Telegram Bot API server of the test suite. Idle: its resident memory once it polls for
updates (after getMe) and has been quiet for a few seconds. Under load: eight people
write at the same moment; the peak (VmHWM) once all eight replies are complete.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from tests.adapters import fake_telegram
from tests.adapters.fake_telegram import FakeTelegram
from tests.adapters.helpers import without_platform_env

QUESTIONS = [
    "Hi! I just adopted a puppy and I have no idea what I'm doing.",
    "I failed my exam today and I feel terrible.",
    "What's a good book to read on a rainy weekend?",
    "I'm so excited, I got the job!",
    "Can you help me plan a birthday party for my sister?",
    "I can't sleep, my neighbours are too loud.",
    "Tell me something interesting about octopuses.",
    "I'm nervous about my first day at a new school tomorrow.",
]


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


async def measure() -> dict[str, float]:
    server = FakeTelegram()
    await server.start()
    clean = without_platform_env()
    env = {
        **clean,
        "HF_HUB_OFFLINE": "1",
        "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
        "TELEGRAM_API_BASE_URL": server.url,
    }
    with tempfile.TemporaryDirectory(prefix="socialbot-bench-") as folder:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core",
            "run",
            "--data-dir",
            str(Path(folder) / "data"),
            env=env,
            cwd=folder,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            # the models load first; then the adapter says hello (getMe) and starts polling
            await server.wait(lambda: any(c.method == "getMe" for c in server.calls), 300)
            await asyncio.sleep(5)
            idle = status(process.pid)
            started = time.perf_counter()
            for n, text in enumerate(QUESTIONS):
                server.update(server.message(text, user=fake_telegram.person(n + 1)))
            await server.wait_for("sendMessage", count=len(QUESTIONS), within=300)
            quiet_since, calls = time.perf_counter(), len(server.calls)
            while time.perf_counter() - quiet_since < 3:  # edits stream in until each is done
                await asyncio.sleep(0.25)
                if len(server.calls) != calls:
                    quiet_since, calls = time.perf_counter(), len(server.calls)
            answered = time.perf_counter() - started - 3
            loaded = status(process.pid)
        finally:
            process.terminate()
            await process.wait()
            await server.stop()
    return {
        "idle_rss_mb": idle["VmRSS"],
        "idle_peak_mb": idle["VmHWM"],
        "load_peak_mb": loaded["VmHWM"],
        "load_seconds": answered,
    }


def main() -> None:
    print(json.dumps(asyncio.run(measure()), indent=2))


if __name__ == "__main__":
    main()
