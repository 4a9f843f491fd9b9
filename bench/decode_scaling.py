"""How llama.cpp's decoding scales with the number of sequences decoded together.

    .venv/bin/python -m bench.decode_scaling [--threads 2 8] [--steps 40] [--model FILE.gguf]

The ceiling for "N conversations at once" on the llama.cpp engine: ``llama_decode`` of
one new token for each of 1, 4 and 8 sequences (each after a 40-token prompt), in a
context made as the engine makes it (8 sequences sized for the companion profile, 1,792
tokens today, each its own cache or one unified cache), on the embedded SmolLM2 GGUF
file (or ``--model``), without socialbot around it.
Prints JSON: milliseconds a step (median) and ``ceiling_8x``, the most 8 at once can
gain over one alone in the decoding phase (8 x one step / the 8-sequence step).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from core.generation import models
from core.generation.factory import conversation_tokens
from core.generation.llamacpp_engine import slot_size
from core.settings import PROJECT_BOTS_DIR, load_profile

PARALLEL = 8
PROMPT = 40


def measure(threads: int, unified: bool, steps: int, path: str = "") -> dict[str, float]:
    import llama_cpp
    from llama_cpp import _internals

    model: Any = _internals.LlamaModel(
        path_model=path or str(models.embedded_gguf().path),
        params=llama_cpp.llama_model_default_params(),
        verbose=False,
    )
    # each sequence's cache sized as the engine sizes it for the companion profile
    slot = slot_size(
        conversation_tokens(load_profile(PROJECT_BOTS_DIR, "companion")), model.n_ctx_train()
    )
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = slot * PARALLEL
    params.n_batch = params.n_ubatch = 512
    params.n_seq_max = PARALLEL
    params.kv_unified = unified
    params.n_threads = params.n_threads_batch = threads
    params.no_perf = True
    ctx: Any = _internals.LlamaContext(model=model, params=params, verbose=False)
    batch: Any = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    positions = [0] * PARALLEL

    def step(sequences: Sequence[int], tokens: int = 1) -> float:
        raw: Any = batch.batch
        raw.n_tokens = 0
        for seq in sequences:
            for _ in range(tokens):
                i = raw.n_tokens
                raw.token[i] = 100 + i
                raw.pos[i] = positions[seq]
                raw.n_seq_id[i] = 1
                raw.seq_id[i][0] = seq
                raw.logits[i] = True
                raw.n_tokens = i + 1
                positions[seq] += 1
        started = time.perf_counter()
        if llama_cpp.llama_decode(ctx.ctx, raw) != 0:
            raise RuntimeError("llama_decode failed")
        return time.perf_counter() - started

    try:
        step(range(PARALLEL), PROMPT)
        ms = {n: statistics.median(step(range(n)) for _ in range(steps)) * 1000 for n in (1, 4, 8)}
    finally:
        batch.close()
        ctx.close()
        model.close()
    return {
        "1": round(ms[1], 2),
        "4": round(ms[4], 2),
        "8": round(ms[8], 2),
        "ceiling_8x": round(8 * ms[1] / ms[8], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="", help="a GGUF file (default: the embedded one)")
    args = parser.parse_args()
    results = {
        f"threads {threads}, kv_unified {str(unified).lower()}": measure(
            threads, unified, args.steps, args.model
        )
        for threads in args.threads
        for unified in (False, True)
    }
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
