"""Does the emotion policy change what the bot says? Replies with the policy on and off.

    .venv/bin/python bench/emotion_effect.py [--limit 300] [--seed 7]

Messages: the GoEmotions test comments labelled sadness, grief, fear, nervousness, anger
or annoyance (the sad, fearful and angry ones). Each is sent, as the first message of a
new direct message, through the real pipeline with the embedded model (SmolLM2-135M),
once with the default profile's emotion policy and once with it switched off: same
model, same seed, same persona. The replies are then read by the emotion classifier;
a reply counts as caring or supportive when its labels include caring, optimism or
love. Reported: that share and the mean reply length, with the policy on and off; and,
since the policy begins replies to distress with an acknowledgement that the model
continues, the same share for what the model wrote after it (the opening removed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core import testing
from core.emotion.classifier import EmotionClassifier
from core.emotion.labels import LABELS
from core.emotion.policy import OPENINGS
from core.emotion.training import read_split
from core.generation.transformers_engine import TransformersGenerator
from core.settings import PROJECT_BOTS_DIR, BotProfile, load_profile

TEST = Path(__file__).resolve().parent.parent / "data" / "goemotions" / "test.tsv"
NEGATIVE = {"sadness", "grief", "fear", "nervousness", "anger", "annoyance"}
SUPPORTIVE = {"caring", "optimism", "love"}


def _without_opening(reply: str) -> str:
    for opening in OPENINGS.values():
        if reply.startswith(opening):
            return reply[len(opening) :].strip()
    return reply


def messages(limit: int) -> list[str]:
    texts, gold = read_split(TEST)
    chosen = [t for t, ids in zip(texts, gold, strict=True) if NEGATIVE & {LABELS[i] for i in ids}]
    return chosen[:limit]


async def replies(
    profile: BotProfile, texts: list[str], cache: Path, log: Path | None
) -> list[str]:
    # A bot owns (and closes) the models it is given: each run gets its own.
    generator = TransformersGenerator(cache_dir=cache)
    name = "on" if profile.emotion.policy else "off"
    out: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        async with testing.open_bot(
            Path(folder), profile=profile, generator=generator, emotions=EmotionClassifier()
        ) as bot:
            for i, text in enumerate(texts):
                result = await testing.say(bot, text, user=f"user{i}")
                out.append(result.reply.text if result.reply and not result.reply.failed else "")
                if log:  # as it goes: a long run that stops keeps what it made
                    with log.open("a") as file:
                        file.write(
                            json.dumps({"policy": name, "message": text, "reply": out[-1]}) + "\n"
                        )
                print(f"\r{name} {i + 1}/{len(texts)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "socialbot")
    parser.add_argument("--out", type=Path, help="append every message and reply here (JSONL)")
    args = parser.parse_args()
    base = load_profile(PROJECT_BOTS_DIR, "companion")
    base = base.model_copy(
        update={
            "generation": base.generation.model_copy(update={"seed": args.seed}),
            "memory": base.memory.model_copy(update={"enabled": False, "summarize": False}),
        }
    )
    off = base.model_copy(update={"emotion": base.emotion.model_copy(update={"policy": False})})
    texts = messages(args.limit)
    classifier = EmotionClassifier()  # reads the replies afterwards
    classifier.load()
    started = time.time()
    results: dict[str, dict[str, Any]] = {}
    for name, profile in (("on", base), ("off", off)):
        said = await replies(profile, texts, args.cache, args.out)
        readings = classifier.read_now([r or "." for r in said])
        supportive = [
            bool(SUPPORTIVE & set(r.predicted)) and bool(s)
            for r, s in zip(readings, said, strict=True)
        ]
        # What the model itself wrote: the reply without the policy's opening sentence.
        written = [_without_opening(s) for s in said]
        own = classifier.read_now([w or "." for w in written])
        results[name] = {
            "replies": said,
            "supportive_share": statistics.fmean(supportive),
            "caring_share": statistics.fmean("caring" in r.predicted for r in readings),
            "model_written_supportive_share": statistics.fmean(
                bool(SUPPORTIVE & set(r.predicted)) and bool(w)
                for r, w in zip(own, written, strict=True)
            ),
            "opened_share": statistics.fmean(s != w for s, w in zip(said, written, strict=True)),
            "mean_words": statistics.fmean(len(s.split()) for s in said),
        }
    print(
        json.dumps(
            {
                "messages": len(texts),
                "seconds": round(time.time() - started),
                **{
                    k: {m: round(v, 4) for m, v in r.items() if m != "replies"}
                    for k, r in results.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
