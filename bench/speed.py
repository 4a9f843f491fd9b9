"""All the speed and memory benchmarks in one command; writes docs/benchmarks.md.

    make bench            (or: .venv/bin/python -m bench.speed --runs 3 --turns 200 --turn-runs 2)

Runs bench/engines.py (engines, conversations at once, long conversations),
bench/core_overhead.py (the pipeline against opsdroid) and bench/memory_rss.py
(``socialbot run`` idle and under load), each in a process of its own so that one's
memory and threads do not weigh on the next, and writes the table with the machine's
description and the targets of issue 7 beside the figures. The raw figures go to
docs/results/benchmarks.json. Takes about 25 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import ROOT, commit, cpu_name

DOC = ROOT / "docs" / "benchmarks.md"
RAW = ROOT / "docs" / "results" / "benchmarks.json"


def run(module: str, *args: str) -> Any:
    print(f"... {module} {' '.join(args)}", file=sys.stderr, flush=True)
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        sys.exit(f"{module} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout[out.stdout.index("{") :])


def machine() -> str:
    cpu = cpu_name()
    memory = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            memory = f"{int(line.split()[1]) / 1024**2:.0f} GiB"
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("llama-cpp-python", "torch", "transformers", "aiosqlite")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory} RAM, no GPU; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {versions}; "
        f"socialbot at commit {commit()}"
    )


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: dict[str, Any], runs: int, turns: int) -> str:
    e = results["engines"]["engines"]
    c = {int(k): v for k, v in results["engines"]["concurrency"].items()}
    t = results["engines"]["turns"]
    at = {int(k): v for k, v in t["at"].items()}
    core = results["core"]
    rss = results["rss"]
    single = e["llama.cpp"]["tokens_per_s"] / e["raw"]["tokens_per_s"]
    scale = c[8]["aggregate"] / c[1]["aggregate"]
    fairness = c[8]["ttft_max"] / c[1]["ttft_max"]
    plain = {int(k): v for k, v in results["engines"]["turns_plain"]["at"].items()}
    last = max(at)
    growth = at[last]["ttft_s"] / at[1]["ttft_s"]
    plain_growth = plain[last]["ttft_s"] / plain[1]["ttft_s"]
    ops = core["opsdroid"]["1000"]["turns_per_s"]
    ours = core["socialbot"]["1000"]["turns_per_s"]
    p99 = core["socialbot"]["1000"]["p99_ms"]
    lines = [
        "# Benchmarks",
        "",
        "Speed and memory of socialbot on one machine, from one run of",
        "",
        "```sh",
        f"make bench    # .venv/bin/python -m bench.speed --runs {runs} --turns {turns} "
        f"--turn-runs {t['runs']}",
        "```",
        "",
        f"Machine: {machine()}. Run on {datetime.date.today().isoformat()}.",
        f"Every figure is the median of {runs} runs; figures compared with each other were "
        "measured in the same run. Model: the embedded SmolLM2-135M-Instruct (the packaged "
        "Q4_1 GGUF file; the transformers engine runs it de-quantised). Raw figures: "
        "docs/results/benchmarks.json.",
        "",
        "## Targets",
        "",
        "| target (issue 7) | measured | |",
        "|---|---|---|",
        f"| one conversation, default engine (llama.cpp): tokens/s ≥ 0.8x raw llama.cpp "
        f"| {e['llama.cpp']['tokens_per_s']:.1f} vs {e['raw']['tokens_per_s']:.1f} tokens/s "
        f"= {single:.2f}x | {verdict(single >= 0.8)} |",
        f"| 8 conversations at once: aggregate tokens/s ≥ 3x one alone "
        f"| {c[8]['aggregate']:.1f} vs {c[1]['aggregate']:.1f} tokens/s = {scale:.2f}x "
        f"| {verdict(scale >= 3)} |",
        f"| 8 at once: every first token within 2x the single first-token time "
        f"| slowest {c[8]['ttft_max']:.3f} s vs {c[1]['ttft_max']:.3f} s = {fairness:.1f}x "
        f"| {verdict(fairness <= 2)} |",
        f"| first-token time at turn {last} ≤ 1.2x turn 1 "
        f"| {at[last]['ttft_s']:.3f} s vs {at[1]['ttft_s']:.3f} s = {growth:.2f}x "
        f"| {verdict(growth <= 1.2)} |",
        f"| the same, long-term memory and summaries off "
        f"| {plain[last]['ttft_s']:.3f} s vs {plain[1]['ttft_s']:.3f} s = {plain_growth:.2f}x "
        f"| {verdict(plain_growth <= 1.2)} |",
        f"| core: throughput ≥ opsdroid's echo, same run (1,000 conversations) "
        f"| {ours:.0f} vs {ops:.0f} turns/s = {ours / ops:.2f}x | {verdict(ours >= ops)} |",
        f"| core: p99 < 50 ms at 1,000 concurrent conversations "
        f"| {p99:.0f} ms | {verdict(p99 < 50)} |",
        "",
        "## Engines: one conversation, same model, same prompt tokens",
        "",
        "Greedy, 128 new tokens, the companion persona and a request for a story. Tokens/s "
        "counts the decoding after the first token.",
        "",
        "| engine | first token (s) | tokens/s |",
        "|---|---|---|",
    ]
    names = {
        "raw": "raw llama.cpp (`llama_cpp.Llama`), reference",
        "llama.cpp": "socialbot llama.cpp engine (default)",
        "transformers": "socialbot transformers engine",
    }
    for key, label in names.items():
        lines.append(f"| {label} | {e[key]['ttft_s']:.3f} | {e[key]['tokens_per_s']:.1f} |")
    lines += [
        "",
        "## Conversations at once (llama.cpp engine, 8 slots)",
        "",
        "Different conversations sent at the same moment, 128 greedy tokens each.",
        "",
        "| conversations | aggregate tokens/s | x one alone | first token, median (s) "
        "| first token, slowest (s) |",
        "|---|---|---|---|---|",
    ]
    for n, v in sorted(c.items()):
        lines.append(
            f"| {n} | {v['aggregate']:.1f} | {v['aggregate'] / c[1]['aggregate']:.2f} "
            f"| {v['ttft_median']:.3f} | {v['ttft_max']:.3f} |"
        )
    lines += [
        "",
        f"## A long conversation ({t['turns']} turns through the whole bot)",
        "",
        f"Medians of {t['runs']} runs of the whole conversation.",
        "",
        "The companion profile (1,536-token prompt budget, 96-token replies, emotion "
        "reader, long-term memory, summaries) on real storage; the model's first-token "
        "time for the reply, and the prompt tokens it had to read (the rest came from its "
        "cache). Then the same conversation with long-term memory and summaries off: the "
        "window and the engine's cache alone.",
        "",
        "| turn | first token (s) | prompt tokens | read | memory off: first token (s) "
        "| prompt tokens | read |",
        "|---|---|---|---|---|---|---|",
    ]
    for turn, v in sorted(at.items()):
        p = plain[turn]
        lines.append(
            f"| {turn} | {v['ttft_s']:.3f} | {v['prompt_tokens']:.0f} | {v['read_tokens']:.0f} "
            f"| {p['ttft_s']:.3f} | {p['prompt_tokens']:.0f} | {p['read_tokens']:.0f} |"
        )
    w, pw = t["window"], results["engines"]["turns_plain"]["window"]
    worst = results["engines"]["turns_plain"]["worst_ttft_s"]
    lines += [
        f"| last 10, mean | {w['ttft_s']:.3f} | | {w['read_tokens']:.0f} "
        f"| {pw['ttft_s']:.3f} | | {pw['read_tokens']:.0f} |",
        "",
        f"Slowest first token of the whole conversation: {t['worst_ttft_s']:.3f} s "
        f"({worst:.3f} s with memory off).",
        "",
        "## Core overhead: the pipeline with no model",
        "",
        "The fake generator (echo), fake emotion reader and embedder, real SQLite storage "
        "(synchronous FULL), the companion profile's plugins. N conversations at once, each "
        "sending its next message when the reply to the last one is stored. opsdroid: the "
        "same echo through its test facility (mocked connector, no database), installed "
        "in a throw-away virtual environment.",
        "",
        "| conversations | socialbot turns/s | p50 (ms) | p99 (ms) | opsdroid turns/s "
        "| p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in ("1", "100", "1000"):
        s, o = core["socialbot"][level], core["opsdroid"][level]
        lines.append(
            f"| {int(level):,} | {s['turns_per_s']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
            f"| {o['turns_per_s']:.0f} | {o['p50_ms']:.1f} | {o['p99_ms']:.1f} |"
        )
    lines += [
        "",
        "## Memory of `socialbot run`",
        "",
        "Default profile and engine, Telegram against the test suite's loopback Bot API.",
        "",
        "| | RSS (MiB) |",
        "|---|---|",
        f"| idle, models loaded | {rss['idle_rss_mb']:.0f} |",
        f"| peak while answering 8 people at once ({rss['load_seconds']:.1f} s) "
        f"| {rss['load_peak_mb']:.0f} |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--turn-runs", type=int, help="runs of the long conversation (--runs)")
    parser.add_argument(
        "--only",
        choices=["engines", "concurrency", "turns", "core", "rss"],
        help="run one part again, keep the others' figures from docs/results/benchmarks.json",
    )
    args = parser.parse_args()
    runs, turn_runs = str(args.runs), str(args.turn_runs or args.runs)
    results: dict[str, Any] = json.loads(RAW.read_text()) if args.only else {}
    engine_args = ["--runs", runs, "--turns", str(args.turns), "--turn-runs", turn_runs]
    if args.only is None:
        results["engines"] = run("bench.engines", *engine_args)
    elif args.only in ("engines", "concurrency", "turns"):
        results["engines"].update(run("bench.engines", *engine_args, "--only", args.only))
    if args.only in (None, "core"):
        results["core"] = run("bench.core_overhead", "--runs", runs)
    if args.only in (None, "rss"):
        results["rss"] = run("bench.memory_rss")
    RAW.write_text(json.dumps(results, indent=2) + "\n")
    notes = DOC.read_text().split("<!-- notes -->", 1)[1] if DOC.exists() else ""
    text = report(results, args.runs, results["engines"]["turns"]["turns"])
    DOC.write_text(text + ("\n<!-- notes -->" + notes if notes else "\n<!-- notes -->\n"))
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
