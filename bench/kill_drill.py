"""Kill -9 drill: ``socialbot run`` killed again and again under load; nothing may be lost.

    .venv/bin/python -m bench.kill_drill [--kills 20] [--people 30] [--rate 12]
        [--compare EARLIER_CHECKOUT]   # the same drill on it first, side by side

The bot runs as an operator runs it (``python -m core run``, a profile of its own) on
Telegram long polling, against two loopback servers of this process: the test suite's
fake Telegram Bot API (it keeps every update until a poll's offset confirms it, as
Telegram does) and a fake OpenAI-compatible model that streams each reply over about a
second (so kills land mid-stream). People write all the time, the bot up or down; it is
killed with SIGKILL at a random moment, ``PRAGMA integrity_check`` is run on its
database, and it is started again. After the last kill it runs until every message has
its answer, then stops normally.

Then, from what the fake Telegram server shows each person (each bot message's latest
text):

- lost: a message with no answer (neither its reply nor the bot-was-down notice);
- doubled: a message answered in more than one bot message;
- half-shown: a bot message left showing part of a reply, unfinished;
- out of order: a person's answers shown in another order than their messages;
- integrity: ``integrity_check`` results other than ``ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aiohttp import web

from bench import ROOT, commit
from tests.adapters import fake_telegram
from tests.adapters.fake_telegram import FakeTelegram
from tests.adapters.helpers import LoopbackServer, without_platform_env

PROFILE = """
name = "drill"
plugins = ["help", "privacy"]
persona = "You answer every message."
[model]
backend = "openai"
model = "drill"
timeout_s = 30
[memory]
enabled = false
summarize = false
[emotion]
enabled = false
"""

WORDS = 12
"""Pieces each reply streams in."""


def reply_to(text: str) -> str:
    """The whole reply the fake model gives to ``text``."""
    return f"Re {text}: " + " ".join(f"word{i}" for i in range(WORDS)) + "."


@dataclass
class FakeModel(LoopbackServer):
    """An OpenAI-compatible server that streams :func:`reply_to` the last user message."""

    pause: float = 0.08
    requests: int = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        await self.serve(app)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        try:
            body = await request.json()
        except ConnectionError:  # the bot was killed while asking
            return web.Response(status=499)
        asked = next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")
        whole = reply_to(asked.strip())
        head, *rest = whole.split(" word")
        pieces = [head, *(" word" + piece for piece in rest)]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):  # the bot was killed mid-reply
            for piece in pieces:
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
                await asyncio.sleep(self.pause)
            await response.write(b"data: [DONE]\n\n")
        return response


@dataclass
class Figures:
    kills: int
    messages: int
    answered: int = 0
    told_down: int = 0
    lost: int = 0
    doubled: int = 0
    half_shown: int = 0
    half_shown_unrecorded: int = 0
    reported_posting: int = 0
    """Replies the bot reported, on restarting, as being posted when it was killed."""
    """Half-shown replies beyond those the bot reported on restarting (its warning that a
    reply was being posted when it stopped): ones nobody knows of."""
    out_of_order: int = 0
    integrity_failures: int = 0
    unfinished_at_kills: int = 0
    """Messages accepted and not yet answered when the bot was killed (summed over kills)."""
    streaming_at_kills: int = 0
    """Of those, ones whose reply was on screen half way."""
    seconds: float = 0.0
    restarts_s: list[float] = field(default_factory=list)


class Drill:
    def __init__(
        self, folder: Path, *, people: int, rate: float, seed: int, source: Path | None = None
    ) -> None:
        self.folder = folder
        self.people = people
        self.rate = rate
        self.random = random.Random(seed)
        self.telegram = FakeTelegram()
        self.model = FakeModel()
        self.asked: list[tuple[int, str]] = []
        """(person, text) of every message sent, in order."""
        self.process: asyncio.subprocess.Process | None = None
        self.integrity: list[str] = []
        self.unfinished = 0
        self.streaming = 0
        self.source = source

    @property
    def database(self) -> Path:
        return self.folder / "data" / "socialbot.db"

    async def start_servers(self) -> None:
        await self.telegram.start()
        await self.model.start()
        profile = self.folder / "bots" / "drill"
        profile.mkdir(parents=True)
        (profile / "bot.toml").write_text(PROFILE)

    async def stop_servers(self) -> None:
        await self.telegram.stop()
        await self.model.stop()

    async def start_bot(self) -> float:
        """Start ``socialbot run``; seconds until it polls for updates."""
        env = {
            **without_platform_env(),
            "HF_HUB_OFFLINE": "1",
            "TELEGRAM_BOT_TOKEN": fake_telegram.TOKEN,
            "TELEGRAM_API_BASE_URL": self.telegram.url,
            "SOCIALBOT_OPENAI_BASE_URL": f"{self.model.url}/v1",
            "SOCIALBOT_BOTS_DIR": str(self.folder / "bots"),
            "SOCIALBOT_BOT": "drill",
            "SOCIALBOT_LOG_LEVEL": "WARNING",
        }
        if self.source is not None:  # another checkout (an earlier commit, to compare)
            env["PYTHONPATH"] = str(self.source)
        polls = len(self.telegram.polls)
        started = time.perf_counter()
        log = (self.folder / "bot.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "core",
            "run",
            "--data-dir",
            str(self.folder / "data"),
            env=env,
            cwd=self.folder,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        await self.telegram.wait(lambda: len(self.telegram.polls) > polls, 120)
        return time.perf_counter() - started

    async def kill_bot(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            (result,) = db.execute("PRAGMA integrity_check").fetchone()
            with contextlib.suppress(sqlite3.OperationalError):  # a version without an inbox
                (unfinished, streaming) = db.execute(
                    "SELECT COUNT(*), COUNT(NULLIF(shown_id, '')) FROM inbox WHERE state != 'done'"
                ).fetchone()
                self.unfinished += unfinished
                self.streaming += streaming
        self.integrity.append(str(result))

    async def stop_bot(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), 120)
        self.process = None

    def send(self) -> None:
        person = self.random.randrange(self.people) + 1
        text = f"q{len(self.asked)}-p{person}"
        self.telegram.update(self.telegram.message(text, user=fake_telegram.person(person)))
        self.asked.append((person, text))

    async def write_for(self, seconds: float) -> None:
        """People write at ``rate`` messages a second (up or down, Telegram queues them)."""
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            self.send()
            await asyncio.sleep(self.random.expovariate(self.rate))

    def shown(self) -> dict[int, tuple[int, str]]:
        """Each bot message's id -> (chat, latest text), as people see them."""
        latest: dict[int, tuple[int, str]] = {}
        for call in self.telegram.calls:
            if call.method in ("sendMessage", "editMessageText") and "_message_id" in call.params:
                chat = int(call.params.get("chat_id") or 0)
                message_id = call.params["_message_id"]
                latest[message_id] = (
                    chat or latest.get(message_id, (0, ""))[0],
                    call.params["text"],
                )
        return latest

    def all_answered(self) -> bool:
        texts = {text for _, text in self.shown().values()}
        return all(reply_to(text) in texts or _down(text, texts) for _, text in self.asked)

    def figures(self, kills: int, seconds: float, restarts: list[float]) -> Figures:
        shown = self.shown()
        figures = Figures(kills, len(self.asked), seconds=round(seconds, 1), restarts_s=restarts)
        whole = {reply_to(text): text for _, text in self.asked}
        for person in range(1, self.people + 1):
            order = []
            for _, (chat, text) in sorted(shown.items()):
                if chat == 1000 + person and text in whole:
                    order.append(whole[text])
            asked = [text for p, text in self.asked if p == person]
            answered = [text for text in asked if text in order]
            if [text for text in order if text in answered] != answered:
                figures.out_of_order += 1
        for _, text in self.asked:
            reply = reply_to(text)
            copies = sum(1 for _, shown_text in shown.values() if shown_text == reply)
            notices = sum(1 for _, shown_text in shown.values() if _down(text, {shown_text}))
            if copies + notices == 0:
                figures.lost += 1
            elif copies + notices > 1:
                figures.doubled += 1
            figures.answered += copies > 0
            figures.told_down += notices > 0
        for _, text in shown.values():
            if text.startswith("Re ") and text not in whole:
                figures.half_shown += 1
        log = (self.folder / "bot.log").read_text(errors="replace")
        reported = log.count("was being posted when the bot stopped")
        figures.reported_posting = reported
        figures.half_shown_unrecorded = max(0, figures.half_shown - reported)
        figures.integrity_failures = sum(1 for result in self.integrity if result != "ok")
        figures.unfinished_at_kills = self.unfinished
        figures.streaming_at_kills = self.streaming
        return figures


def _down(text: str, shown: set[str]) -> bool:
    return any("offline when you sent this" in s and text in s for s in shown)


async def drill(
    *,
    kills: int = 20,
    people: int = 30,
    rate: float = 12.0,
    seed: int = 7,
    up: float = 3.0,
    source: Path | None = None,
    answer_within: float = 120.0,
) -> Figures:
    """Run the drill in a fresh folder; see the module's docstring. ``source``: run the
    bot from that checkout instead; ``answer_within``: how long, after the last start,
    every message may take to be answered (a version that loses some never gets there)."""
    with tempfile.TemporaryDirectory(prefix="socialbot-drill-") as name:
        run = Drill(Path(name), people=people, rate=rate, seed=seed, source=source)
        await run.start_servers()
        started = time.perf_counter()
        restarts: list[float] = []
        try:
            for _ in range(kills):
                restarts.append(round(await run.start_bot(), 2))
                await run.write_for(run.random.uniform(0.5, up))
                await run.kill_bot()
                await run.write_for(run.random.uniform(0.0, 0.5))  # while it is down
            restarts.append(round(await run.start_bot(), 2))
            with contextlib.suppress(TimeoutError):  # what is lost is counted below
                await run.telegram.wait(run.all_answered, answer_within)
            await run.stop_bot()
        except BaseException:
            if run.process is not None:
                run.process.kill()
                await run.process.wait()
            log = (Path(name) / "bot.log").read_text(errors="replace")
            print(log[-4000:], file=sys.stderr)
            raise
        finally:
            await run.stop_servers()
        return run.figures(kills, time.perf_counter() - started, restarts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--rate", type=float, default=12.0, help="messages a second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--source", type=Path, help="run the bot from this checkout")
    parser.add_argument(
        "--compare", type=Path, help="first the same drill on this checkout (an earlier commit)"
    )
    args = parser.parse_args()
    runs = [("compared", args.compare)] if args.compare else []
    results: dict[str, object] = {"cpus": os.cpu_count()}
    for name, source in [*runs, ("this", args.source)]:
        figures = asyncio.run(
            drill(
                kills=args.kills,
                people=args.people,
                rate=args.rate,
                seed=args.seed,
                source=source,
            )
        )
        results[name] = {"commit": commit(source or ROOT, length=12), **asdict(figures)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
