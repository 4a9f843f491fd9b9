"""The echo workload through opsdroid, the reference point for socialbot's core overhead.

Runs inside a throw-away virtual environment that ``bench/core_overhead.py`` makes
(opsdroid pins old libraries; it must not share socialbot's). Uses opsdroid's own
in-process test facility: ``opsdroid.testing.run_unit_test`` on an instance loaded with
its mocked connector, and an echo skill; each message goes through ``OpsDroid.parse``
(matching, then the skill, which answers through the connector).

    python bench/opsdroid_echo.py CONCURRENCY TURNS   -> prints JSON

Standard library and opsdroid only: this file is not imported by socialbot.
"""

import asyncio
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SKILL = textwrap.dedent(
    """
    from opsdroid.matchers import match_regex
    from opsdroid.skill import Skill


    class Echo(Skill):
        @match_regex(r"(?s)(.*)")
        async def echo(self, message):
            await message.respond("echo: " + message.text)
    """
)


async def measure(concurrency: int, turns: int) -> dict[str, float]:
    # only installed in the throw-away environment this file runs in
    from opsdroid.cli.start import configure_lang  # type: ignore[import-not-found]
    from opsdroid.core import OpsDroid  # type: ignore[import-not-found]
    from opsdroid.events import Message  # type: ignore[import-not-found]
    from opsdroid.testing import run_unit_test  # type: ignore[import-not-found]

    configure_lang({})  # opsdroid's translation function, as its own tests set it up
    with tempfile.TemporaryDirectory() as folder:
        skill = Path(folder) / "echo_skill.py"
        skill.write_text(SKILL)
        config = {
            "connectors": {"mock": {"module": "opsdroid.testing.mockmodules.connectors.mocked"}},
            "skills": {"echo": {"path": str(skill)}},
        }
        with OpsDroid(config=config) as opsdroid:
            await opsdroid.load()
            latencies: list[float] = []

            async def conversation(n: int, count: int) -> None:
                connector = opsdroid.connectors[0]  # started by run_unit_test
                for i in range(count):
                    event = Message(
                        text=f"hello {i}", user=f"user{n}", target=f"room{n}", connector=connector
                    )
                    started = time.perf_counter()
                    await opsdroid.parse(event)
                    latencies.append(time.perf_counter() - started)

            async def workload() -> float:
                per = max(1, turns // concurrency)
                started = time.perf_counter()
                await asyncio.gather(*(conversation(n, per) for n in range(concurrency)))
                return time.perf_counter() - started

            wall = await run_unit_test(opsdroid, workload)
            answered = opsdroid.connectors[0].send.await_count if opsdroid.connectors else -1
    latencies.sort()
    return {
        "turns": len(latencies),
        "answered": answered,
        "turns_per_s": len(latencies) / wall,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


if __name__ == "__main__":
    result = asyncio.run(measure(int(sys.argv[1]), int(sys.argv[2])))
    print(json.dumps(result))
