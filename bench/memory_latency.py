"""Long-term memory retrieval latency with 10k, 100k and 1M memories in one scope.

    .venv/bin/python bench/memory_latency.py [--sizes 10000,100000,1000000] [--queries 50]

Memories are random unit vectors of the embedding model's size (384), stored
through the product's own code (SQLite rows, then the in-memory scope index).
Reported per size: insert throughput, the first search (loads the scope's
index from SQLite), and warm searches (median and p95 of --queries, each
returning the top 5 with their text). A query's embedding is timed apart,
with the real model, since it does not depend on the memory's size.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from core.memory.longterm import LongTermMemory, SentenceEmbedder, Vectors
from core.privacy import Cipher, Privacy, Pseudonymizer
from core.storage.store import Store
from core.testing import message

DIM = 384
CHUNK = 50_000


def unit(rng: np.random.Generator, n: int) -> Vectors:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    norms: Vectors = np.linalg.norm(v, axis=1, keepdims=True)
    return v / norms


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Fixed:
    dimensions = DIM


async def measure(size: int, queries: int, rng: np.random.Generator) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="socialbot-bench-") as folder:
        privacy = Privacy(Pseudonymizer(b"benchmark-only-key"), Cipher(), redact_stored=False)
        store = await Store.open(Path(folder) / "bench.db", privacy, synchronous="NORMAL")
        memory = LongTermMemory(store, _Fixed())  # type: ignore[arg-type]
        owner = message("", user="someone")
        started = time.perf_counter()
        now = time.time()
        for first in range(0, size, CHUNK):
            count = min(CHUNK, size - first)
            items = [(f"memory number {first + i}", now - (first + i), None) for i in range(count)]
            await memory.add_many(owner, items, unit(rng, count))
        insert_s = time.perf_counter() - started
        scope = privacy.scope(owner)
        probes = unit(rng, queries + 1)
        started = time.perf_counter()
        await memory.search(scope, probes[0], k=5)
        cold_ms = (time.perf_counter() - started) * 1000
        warm = []
        for probe in probes[1:]:
            started = time.perf_counter()
            found = await memory.search(scope, probe, k=5)
            warm.append((time.perf_counter() - started) * 1000)
            assert len(found) == 5
        result = {
            "size": size,
            "insert_per_s": size / insert_s,
            "cold_ms": cold_ms,
            "p50_ms": statistics.median(warm),
            "p95_ms": float(np.percentile(warm, 95)),
            "rss_mb": rss_mb(),
            "db_mb": (Path(folder) / "bench.db").stat().st_size / 2**20,
        }
        await store.close()
        return result


async def embedding_ms(samples: int = 30) -> float:
    embedder = SentenceEmbedder()
    await embedder.start()
    await embedder.embed(["warm up"])
    times = []
    for i in range(samples):
        started = time.perf_counter()
        await embedder.embed([f"what did I tell you about my trip number {i}?"])
        times.append((time.perf_counter() - started) * 1000)
    await embedder.close()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"query embedding (all-MiniLM-L6-v2, batch of 1): {await embedding_ms():.1f} ms median\n")
    print(
        "| memories in the scope | insert (rows/s) | first search (index load) | "
        "search p50 | search p95 | process RSS | database |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        r = await measure(size, args.queries, rng)
        print(
            f"| {size:,} | {r['insert_per_s']:,.0f} | {r['cold_ms']:,.0f} ms | "
            f"{r['p50_ms']:.2f} ms | {r['p95_ms']:.2f} ms | {r['rss_mb']:,.0f} MB | "
            f"{r['db_mb']:,.0f} MB |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
