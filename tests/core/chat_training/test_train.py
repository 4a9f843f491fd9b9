"""A few real LoRA steps on the embedded SmolLM2: the loss falls, the adapter loads back
into the bot and into `socialbot eval chat`, and a stopped run resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.cli import main
from core.generation.transformers_engine import TransformersGenerator
from core.settings import GenerationSettings
from core.training.chat.train import ChatTrainConfig, train
from core.types import ChatMessage, Role

pytestmark = pytest.mark.model

SAMPLE = Path(__file__).parents[2] / "data" / "persona_chat_sample.csv"


def config(out: Path, model_cache: Path) -> ChatTrainConfig:
    return ChatTrainConfig(
        data=SAMPLE,
        dev_data=SAMPLE,  # tiny data: the point is that learning happens, not generalising
        out=out,
        cache_dir=model_cache,
        bot_speaker="2",
        max_length=128,
        batch_size=4,
        lr=2e-3,
        epochs=2,
        max_steps=8,
        lora_r=8,
        warmup=0.0,
        checkpoint_every=3,
        patience=2,
    )


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("adapter")
    report = train(config(out, model_cache))
    return out, report


def test_loss_falls_and_the_report_says_so(trained: tuple[Path, dict[str, Any]]) -> None:
    out, report = trained
    assert report["steps"] == 8
    first = report["history"][0]
    assert first["train_loss_last"] < first["train_loss_first"]
    assert report["dev_best"]["perplexity"] < 0.9 * report["dev_base"]["perplexity"]
    saved = json.loads((out / "training.json").read_text())
    assert saved["base_model"] == "embedded" and saved["config"]["lora_r"] == 8
    assert {"adapter_config.json", "adapter_model.safetensors", "checkpoint.pt"} <= {
        p.name for p in out.iterdir()
    }


def test_a_finished_run_resumes_without_training_again(
    trained: tuple[Path, dict[str, Any]], model_cache: Path
) -> None:
    out, report = trained
    again = train(config(out, model_cache))  # the same run, started again
    assert again["steps"] == report["steps"] and again["history"] == report["history"]


async def test_the_adapter_loads_into_the_generator(
    trained: tuple[Path, dict[str, Any]], model_cache: Path
) -> None:
    out, _ = trained
    prompt = [
        ChatMessage(Role.SYSTEM, "You are chatting with someone you just met."),
        ChatMessage(Role.USER, "Hi! What do you like to do?"),
    ]
    params = GenerationSettings(max_new_tokens=12, temperature=0.0)
    replies = []
    for adapter, merge in ((None, True), (out, True), (out, False)):
        generator = TransformersGenerator(
            cache_dir=model_cache, adapter=adapter, merge_adapter=merge
        )
        await generator.start()
        try:
            replies.append(await generator.generate(prompt, params))
        finally:
            await generator.close()
    base, merged, unmerged = replies
    assert merged and merged == unmerged  # merging changes speed, not what it says
    assert merged != base  # the adapter changed the model


async def test_an_adapter_for_another_base_or_missing_is_a_clear_error(
    trained: tuple[Path, dict[str, Any]], model_cache: Path, tmp_path: Path
) -> None:
    from core.errors import ModelNotFoundError

    out, _ = trained
    missing = TransformersGenerator(cache_dir=model_cache, adapter=tmp_path / "nope")
    with pytest.raises(ModelNotFoundError, match="does not exist: train one"):
        await missing.start()
    other = tmp_path / "other"
    other.mkdir()
    (other / "adapter_config.json").write_text((out / "adapter_config.json").read_text())
    (other / "training.json").write_text(json.dumps({"base_model": "gpt2"}))
    wrong = TransformersGenerator(cache_dir=model_cache, adapter=other)
    with pytest.raises(ModelNotFoundError, match="trained on 'gpt2'"):
        await wrong.start()


def test_eval_chat_compares_base_and_adapter(
    trained: tuple[Path, dict[str, Any]],
    model_cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = trained
    monkeypatch.setenv("SOCIALBOT_CACHE_DIR", str(model_cache))
    code = main(
        [
            "eval",
            "chat",
            "--data",
            str(SAMPLE),
            "--adapter",
            str(out),
            "--bot-speaker",
            "2",
            "--max-length",
            "128",
            "--data-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["adapted"]["perplexity"] < result["base"]["perplexity"]
    assert result["bot_tokens"] > 100 and result["perplexity_change"].startswith("-")
