from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.memory.evaluation import evaluate_memory
from core.memory.longterm import FakeEmbedder

TINY = Path(__file__).resolve().parent.parent / "data" / "memory_eval_tiny.jsonl"


async def test_recall_per_k_and_category(tmp_path: Path) -> None:
    predictions = tmp_path / "pred.jsonl"
    result = await evaluate_memory(TINY, FakeEmbedder(), k=2, predictions=predictions)
    assert result["questions"] == 3 and result["unscored_questions"] == 1
    # the bag-of-words fake puts the turn sharing the question's words first
    assert result["recall@1"] == pytest.approx((1 + 0.5 + 1) / 3, abs=1e-4)
    assert result["recall@5"] == 1.0 and result["recall@25"] == 1.0
    assert result["per_category"]["1"] == {
        "questions": 2,
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "recall@25": 1.0,
    }
    assert result["per_category"]["2"]["recall@1"] == 0.5
    assert "3" not in result["per_category"]  # no evidence: not scored
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(lines) == 4 and all(len(p["retrieved"]) <= 2 for p in lines)
    assert lines[0]["retrieved"][0] == "a1"
    # conversations are separate scopes: nothing of "a" is retrieved for "b"
    assert all(t.startswith("b") for t in lines[3]["retrieved"])


async def test_bad_lines_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "turns": [], "questions": [{"evidence": []}]}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: questions.0.q: Field required"):
        await evaluate_memory(bad, FakeEmbedder())
