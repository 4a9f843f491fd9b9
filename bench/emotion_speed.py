"""Emotion reading speed: one message at a time (the per-turn cost) and batched.

    .venv/bin/python -m bench.emotion_speed [--weights core/emotion/weights]

Targets (issue): at most 15 ms per message at the median with a batch of 1, and at
least 200 messages/s batched, on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from bench import cpu_name
from core.emotion.classifier import WEIGHTS, EmotionClassifier
from core.emotion.training import read_split

TEST = Path(__file__).resolve().parent.parent / "data" / "goemotions" / "test.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    parser.add_argument("--singles", type=int, default=300)
    args = parser.parse_args()
    texts, _ = read_split(TEST)
    classifier = EmotionClassifier(args.weights)
    classifier.load()
    classifier.read_now(texts[:64])  # warm up
    single = []
    for text in texts[: args.singles]:
        started = time.perf_counter()
        classifier.read_now([text])
        single.append((time.perf_counter() - started) * 1000)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"weights: {args.weights}"
    )
    print("| batch | median per call | p95 per call | messages/s |")
    print("|---:|---:|---:|---:|")
    print(
        f"| 1 | {statistics.median(single):.1f} ms | "
        f"{sorted(single)[int(len(single) * 0.95)]:.1f} ms | "
        f"{1000 / statistics.fmean(single):.0f} |"
    )
    for size in (16, 64):
        sample = texts[:2048]
        started = time.perf_counter()
        calls = []
        for i in range(0, len(sample), size):
            t0 = time.perf_counter()
            classifier.read_now(sample[i : i + size])
            calls.append((time.perf_counter() - t0) * 1000)
        rate = len(sample) / (time.perf_counter() - started)
        print(
            f"| {size} | {statistics.median(calls):.1f} ms | "
            f"{sorted(calls)[int(len(calls) * 0.95)]:.1f} ms | {rate:.0f} |"
        )


if __name__ == "__main__":
    main()
