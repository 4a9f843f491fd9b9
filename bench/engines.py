"""Generation speed: the engines side by side, conversations at once, long conversations.

    .venv/bin/python -m bench.engines [--runs 3] [--turns 200]

Part of ``bench/speed.py`` (which writes docs/benchmarks.md); runnable alone, it prints
its figures as JSON. Everything uses the embedded SmolLM2-135M-Instruct GGUF file.

- ``engines``: one conversation, greedy, 128 new tokens, the same prompt tokens for
  raw llama.cpp (``llama_cpp.Llama.create_completion``, the reference), the llama.cpp
  engine and the transformers engine. Each run starts its system prompt differently so
  that no engine reads it from a cache. Time to first token, and tokens/s of the
  decoding after it.
- ``concurrency``: 1, 4 and 8 different conversations sent at once to the llama.cpp
  engine (8 slots): aggregate tokens/s over the wall time, and each conversation's first
  token time.
- ``turns``: a 200-turn conversation through the whole bot (real storage, emotion
  reader, embedder, summaries, companion profile), user lines from the held-out
  Synthetic-Persona-Chat conversations; the model's first-token time at every turn and
  how many prompt tokens it had to read. Then the same with long-term memory and
  summaries off (``turns_plain``): what the window and the engine's cache cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from core.bot import Bot
from core.channel import CollectingChannel
from core.generation import models
from core.generation.factory import conversation_tokens
from core.generation.llamacpp_engine import LlamaCppGenerator
from core.generation.transformers_engine import TransformersGenerator
from core.memory.summary import INSTRUCTIONS
from core.settings import PROJECT_BOTS_DIR, GenerationSettings, Settings, load_profile
from core.testing import message
from core.types import ChatMessage, Role

ROOT = Path(__file__).resolve().parent.parent
THREADS = min(os.cpu_count() or 1, 8)  # the engine's own default
RENDERED: list[str] = []  # prompts for raw_llama, as the engine rendered them
GREEDY = GenerationSettings(max_new_tokens=128, temperature=0.0, repetition_penalty=1.0)
COMPANION = load_profile(PROJECT_BOTS_DIR, "companion")
PERSONA = COMPANION.persona
QUESTIONS = [
    "Tell me a long story about a lighthouse keeper and a storm.",
    "Describe your perfect weekend in detail, hour by hour.",
    "Explain how bread is made, from the field to the oven.",
    "Write a long letter to a friend who moved to another country.",
    "Tell me everything you know about the moon and its phases.",
    "Describe a walk through a busy market in the morning.",
    "Tell me a story about a cat who learns to play the piano.",
    "Explain to a child how rain forms and why it falls.",
]


def prompt(run: int, question: str) -> list[ChatMessage]:
    return [
        ChatMessage(Role.SYSTEM, f"Session {run}. {PERSONA}"),
        ChatMessage(Role.USER, question),
    ]


def gguf() -> Path:
    source = models.gguf_source("embedded", None)
    assert source is not None
    return source.path


async def timed(pieces: AsyncIterator[str], started: float) -> tuple[float, float, str]:
    """(first-token time, end time, text) of a stream, times relative to ``started``."""
    first, text = None, []
    async for piece in pieces:
        if first is None:
            first = time.perf_counter() - started
        text.append(piece)
    return first or float("nan"), time.perf_counter() - started, "".join(text)


def rate(tokens: int, first: float, end: float) -> float:
    """Tokens/s of the decoding after the first token."""
    return (tokens - 1) / (end - first) if tokens > 1 and end > first else float("nan")


def raw_llama(runs: int) -> list[tuple[float, float]]:
    """Raw llama.cpp, run in a process of its own (see :func:`engines`)."""
    import llama_cpp

    path = gguf()
    raw = llama_cpp.Llama(str(path), n_ctx=4096, n_batch=512, n_threads=THREADS, verbose=False)
    figures = []
    try:
        for run in range(runs):
            tokens = raw.tokenize(RENDERED[run].encode(), add_bos=False, special=True)
            started = time.perf_counter()
            stream = raw.create_completion(
                tokens, max_tokens=GREEDY.max_new_tokens, temperature=0.0, stream=True
            )
            first, count = float("nan"), 0
            for _ in stream:
                count += 1
                if count == 1:
                    first = time.perf_counter() - started
            end = time.perf_counter() - started
            figures.append((first, rate(count, first, end)))
    finally:
        raw.close()
    return figures


async def engines(runs: int) -> dict[str, dict[str, float]]:
    """Each engine in turn. Raw llama.cpp runs in a process of its own: two threads that
    each drive a llama.cpp context (its ``Llama`` on the main thread, the engine on its
    worker thread) make two OpenMP thread teams that slow each other down 3x on 2 cores,
    which measures the clash, not the engines. The engine renders the prompts for both."""
    local = LlamaCppGenerator(gguf(), parallel=1, threads=THREADS)
    await local.start()
    prompts = [prompt(run, QUESTIONS[0]) for run in range(runs)]
    figures: dict[str, list[tuple[float, float]]] = {"llama.cpp": [], "transformers": []}
    try:
        for messages in prompts:
            started = time.perf_counter()
            first, end, text = await timed(local.stream(messages, GREEDY), started)
            figures["llama.cpp"].append((first, rate(local.count_text(text), first, end)))
        rendered = [local.render(messages) for messages in prompts]
        # transformers last: a torch thread pool slows llama.cpp in the same process (the
        # bot runs its torch models on one thread when llama.cpp generates)
        hf = TransformersGenerator(cache_dir=Settings(_env_file=None).cache_dir)  # type: ignore[call-arg]
        await hf.start()
        try:
            for messages in prompts:
                started = time.perf_counter()
                first, end, text = await timed(hf.stream(messages, GREEDY), started)
                figures["transformers"].append((first, rate(local.count_text(text), first, end)))
        finally:
            await hf.close()
    finally:
        await local.close()
    out = subprocess.run(  # noqa: ASYNC221 - nothing else runs meanwhile
        [sys.executable, "-m", "bench.engines", "--raw", json.dumps(rendered)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures["raw"] = [tuple(pair) for pair in json.loads(out.stdout)]
    return {
        name: {
            "ttft_s": statistics.median(f for f, _ in figures[name]),
            "tokens_per_s": statistics.median(r for _, r in figures[name]),
        }
        for name in ("raw", "llama.cpp", "transformers")
    }


async def concurrency(runs: int, levels: Sequence[int] = (1, 4, 8)) -> dict[int, dict[str, float]]:
    engine = LlamaCppGenerator(  # slots sized as the companion profile sizes them
        gguf(), parallel=max(levels), conversation_tokens=conversation_tokens(COMPANION)
    )
    await engine.start()
    out: dict[int, dict[str, list[float]]] = {
        n: {"aggregate": [], "ttft_max": [], "ttft_median": []} for n in levels
    }
    try:
        for run in range(runs):
            for n in levels:
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(
                        timed(engine.stream(prompt(100 * run + n, q), GREEDY), started)
                        for q in QUESTIONS[:n]
                    )
                )
                wall = max(end for _, end, _ in results)
                tokens = sum(engine.count_text(text) for _, _, text in results)
                firsts = [first for first, _, _ in results]
                out[n]["aggregate"].append(tokens / wall)
                out[n]["ttft_max"].append(max(firsts))
                out[n]["ttft_median"].append(statistics.median(firsts))
    finally:
        await engine.close()
    return {n: {k: statistics.median(v) for k, v in d.items()} for n, d in out.items()}


class TimedLlama(LlamaCppGenerator):
    """The llama.cpp engine, noting for each reply (not summaries) when its first token
    came and how many prompt tokens were read rather than taken from the cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turns: dict[int, dict[str, float]] = {}
        self.turn = 0

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationSettings
    ) -> AsyncIterator[str]:
        if messages[0].content == INSTRUCTIONS:  # a summary being folded, in the background
            async for piece in super().stream(messages, params):
                yield piece
            return
        prompt_tokens = self.count_tokens(messages)
        reused = self.reused_tokens
        started = time.perf_counter()
        first = True
        async for piece in super().stream(messages, params):
            if first:
                first = False
                self.turns[self.turn] = {
                    "ttft_s": time.perf_counter() - started,
                    "prompt_tokens": prompt_tokens,
                    "read_tokens": prompt_tokens - (self.reused_tokens - reused),
                }
            yield piece


def user_lines(count: int) -> list[str]:
    from core.training.chat.data import read_conversations

    lines: list[str] = []
    for conversation in read_conversations(
        ROOT / "data/synthetic-persona-chat/heldout.csv", bot_speaker="2"
    ):
        lines += [m["content"] for m in conversation if m["role"] == "user"]
    return (lines * (count // max(1, len(lines)) + 1))[:count]


async def turns(runs: int, count: int, at: Sequence[int], memory: bool = True) -> dict[str, Any]:
    # one person's 200 quick messages would rightly trip the flood limit
    profile = COMPANION.model_copy(update={"plugin": {"moderation": {"flood_messages": 10**6}}})
    if not memory:
        off = profile.memory.model_copy(update={"enabled": False, "summarize": False})
        profile = profile.model_copy(update={"memory": off})
    lines = user_lines(count)
    per_run: list[dict[int, dict[str, float]]] = []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="socialbot-bench-") as folder:
            settings = Settings(
                data_dir=Path(folder),
                bots_dir=PROJECT_BOTS_DIR,
                _env_file=None,  # type: ignore[call-arg]
            )
            generator = TimedLlama(  # as create_generator makes it, with a clock on
                gguf(),
                parallel=profile.model.parallel,
                reuse_chunk=profile.model.reuse_chunk,
                conversation_tokens=conversation_tokens(profile),
            )
            bot = await Bot.open(settings, profile, generator=generator)
            try:
                for turn, text in enumerate(lines, 1):
                    generator.turn = turn
                    await bot.handle(message(text, user=f"user{run}"), CollectingChannel())
            finally:
                await bot.close()
            missing = [t for t in at if t not in generator.turns]
            if missing:
                raise SystemExit(f"turns {missing} did not reach the model")
            per_run.append(generator.turns)
    return {
        "turns": count,
        "at": {
            turn: {
                key: statistics.median(run[turn][key] for run in per_run)
                for key in ("ttft_s", "prompt_tokens", "read_tokens")
            }
            for turn in at
        },
        "window": {  # turn 191-200 (the last ten): the steady state, jumps included
            key: statistics.median(
                statistics.mean(run[t][key] for t in range(count - 9, count + 1) if t in run)
                for run in per_run
            )
            for key in ("ttft_s", "read_tokens")
        },
        "worst_ttft_s": statistics.median(
            max(t["ttft_s"] for t in run.values()) for run in per_run
        ),
        "answered_by_model": statistics.median(len(run) for run in per_run),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--turn-runs", type=int, help="runs of the long conversation (--runs)")
    parser.add_argument("--raw", help=argparse.SUPPRESS)  # JSON list of rendered prompts
    parser.add_argument("--only", choices=["engines", "concurrency", "turns"])
    args = parser.parse_args()
    if args.raw:
        RENDERED.extend(json.loads(args.raw))
        print(json.dumps(raw_llama(len(RENDERED))))
        return
    results: dict[str, Any] = {}
    if args.only in (None, "engines"):
        results["engines"] = asyncio.run(engines(args.runs))
    if args.only in (None, "concurrency"):
        results["concurrency"] = asyncio.run(concurrency(args.runs))
    if args.only in (None, "turns"):
        at = [t for t in (1, 50, 200) if t <= args.turns]
        turn_runs = args.turn_runs or args.runs
        results["turns"] = asyncio.run(turns(turn_runs, args.turns, at))
        results["turns_plain"] = asyncio.run(turns(turn_runs, args.turns, at, memory=False))
        results["turns"]["runs"] = results["turns_plain"]["runs"] = turn_runs
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
