"""Does the emotion policy change what the bot says? Replies with the policy on and off.

    .venv/bin/python bench/emotion_effect.py [--limit 200] [--seed 7] [--out replies.jsonl]
    .venv/bin/python bench/emotion_effect.py --choose bench/opening_candidates.json

Messages: the GoEmotions comments labelled sadness, grief, fear, nervousness, anger or
annoyance (the sad, fearful and angry ones) of the test split (or `--split dev`). Each
is sent, as the first message of a new direct message, through the real pipeline with
the default engine and the embedded model (SmolLM2-135M), once with the default
profile's emotion policy and once with it switched off: same model, same seed, same
persona. The replies are then read by the emotion classifier; a reply counts as caring
or supportive when its labels include caring, optimism or love. Reported: that share
and the mean reply length, with the policy on and off; and, since the policy begins
replies to distress with an acknowledgement that the model continues, the same share
for what the model wrote after it (the opening removed).

`--choose FILE` picks the openings instead: on the dev split, it answers each message
that the policy would open (sad, afraid or angry readings) once with every candidate
of FILE (``{group: [opening, ...]}``) and prints, per group, the share of replies read
as caring or supportive for each candidate and the best one. The test split plays no
part in that choice.
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
from core.emotion.labels import LABELS, Reading
from core.emotion.policy import CALM, OPENINGS, group_of
from core.emotion.training import read_split
from core.generation.factory import create_generator
from core.settings import PROJECT_BOTS_DIR, BotProfile, Settings, load_profile

DATA = Path(__file__).resolve().parent.parent / "data" / "goemotions"
NEGATIVE = {"sadness", "grief", "fear", "nervousness", "anger", "annoyance"}
SUPPORTIVE = {"caring", "optimism", "love"}


def messages(split: str, limit: int) -> list[str]:
    texts, gold = read_split(DATA / f"{split}.tsv")
    chosen = [t for t, ids in zip(texts, gold, strict=True) if NEGATIVE & {LABELS[i] for i in ids}]
    return chosen[:limit]


def supportive(reading: Reading, text: str) -> bool:
    return bool(text) and bool(SUPPORTIVE & set(reading.predicted))


def without_opening(reply: str, openings: set[str]) -> str:
    for opening in openings:
        if opening and reply.startswith(opening):
            return reply[len(opening) :].strip()
    return reply


async def replies(
    profile: BotProfile, texts: list[str], cache: Path, log: Path | None, name: str
) -> list[str]:
    out: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            data_dir=Path(folder),
            cache_dir=cache,
            bots_dir=PROJECT_BOTS_DIR,
            _env_file=None,  # type: ignore[call-arg]
        )
        # A bot owns (and closes) the models it is given: each run gets its own.
        generator = create_generator(profile, settings)
        async with testing.open_bot(
            Path(folder),
            profile=profile,
            generator=generator,
            emotions=EmotionClassifier(),
            settings=settings,
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


def with_openings(profile: BotProfile, openings: dict[str, str]) -> BotProfile:
    emotion = profile.emotion.model_copy(update={"openings": {**OPENINGS, **openings}})
    return profile.model_copy(update={"emotion": emotion})


async def compare(
    args: argparse.Namespace, base: BotProfile, classifier: EmotionClassifier
) -> dict[str, Any]:
    """Policy on and off on the split's first ``--limit`` distressed messages."""
    openings: dict[str, str] = json.loads(args.openings.read_text()) if args.openings else {}
    on = with_openings(base, openings)
    used = set(on.emotion.openings.values())
    off = base.model_copy(update={"emotion": base.emotion.model_copy(update={"policy": False})})
    texts = messages(args.split, args.limit)
    results: dict[str, dict[str, Any]] = {}
    for name, profile in (("on", on), ("off", off)):
        said = await replies(profile, texts, args.cache, args.out, name)
        readings = classifier.read_now([r or "." for r in said])
        written = [without_opening(s, used) for s in said]
        own = classifier.read_now([w or "." for w in written])
        results[name] = {
            "supportive_share": statistics.fmean(map(supportive, readings, said)),
            "caring_share": statistics.fmean("caring" in r.predicted for r in readings),
            "model_written_supportive_share": statistics.fmean(map(supportive, own, written)),
            "opened_share": statistics.fmean(s != w for s, w in zip(said, written, strict=True)),
            "mean_words": statistics.fmean(len(s.split()) for s in said),
        }
    return {
        "split": args.split,
        "messages": len(texts),
        "openings": on.emotion.openings,
        **{k: {m: round(v, 4) for m, v in r.items()} for k, r in results.items()},
    }


async def choose(
    args: argparse.Namespace, base: BotProfile, classifier: EmotionClassifier
) -> dict[str, Any]:
    """Every candidate opening on the dev messages the policy opens; the best per group."""
    candidates: dict[str, list[str]] = {
        g: c for g, c in json.loads(args.choose.read_text()).items() if g in CALM
    }
    texts = messages("dev", args.limit)
    groups = [group_of(r) for r in classifier.read_now(texts)]
    opened = [(t, g) for t, g in zip(texts, groups, strict=True) if g in candidates]
    rounds = max(len(c) for c in candidates.values())
    scores: dict[str, list[float]] = {g: [] for g in candidates}
    for k in range(rounds):
        openings = {g: c[min(k, len(c) - 1)] for g, c in candidates.items()}
        said = await replies(
            with_openings(base, openings), [t for t, _ in opened], args.cache, args.out, f"set{k}"
        )
        readings = classifier.read_now([r or "." for r in said])
        for group in candidates:
            if k < len(candidates[group]):
                hits = [
                    supportive(r, s)
                    for r, s, (_, g) in zip(readings, said, opened, strict=True)
                    if g == group
                ]
                scores[group].append(statistics.fmean(hits) if hits else 0.0)
    return {
        "split": "dev",
        "messages": len(texts),
        "opened": {g: sum(1 for _, x in opened if x == g) for g in candidates},
        "supportive_share": {
            g: {c: round(s, 4) for c, s in zip(candidates[g], scores[g], strict=False)}
            for g in candidates
        },
        "chosen": {g: candidates[g][scores[g].index(max(scores[g]))] for g in candidates},
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--split", choices=("test", "dev"), default="test")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "socialbot")
    parser.add_argument("--out", type=Path, help="append every message and reply here (JSONL)")
    parser.add_argument("--openings", type=Path, help="JSON {group: opening} for the policy run")
    parser.add_argument("--choose", type=Path, help="JSON {group: [candidate openings]}")
    parser.add_argument("--backend", help="an engine other than the profile's default")
    args = parser.parse_args()
    base = load_profile(PROJECT_BOTS_DIR, "companion")
    update: dict[str, Any] = {
        "generation": base.generation.model_copy(update={"seed": args.seed}),
        "memory": base.memory.model_copy(update={"enabled": False, "summarize": False}),
    }
    if args.backend:
        update["model"] = base.model.model_copy(update={"backend": args.backend})
    base = base.model_copy(update=update)
    classifier = EmotionClassifier()  # reads the replies afterwards
    classifier.load()
    started = time.time()
    result = await (choose if args.choose else compare)(args, base, classifier)
    result["seconds"] = round(time.time() - started)
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main())
