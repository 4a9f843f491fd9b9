"""Reading user-supplied data files with errors a person can act on."""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError


def read_lines(path: Path) -> list[str]:
    """The file's lines (UTF-8); a missing or unreadable file is one clear ConfigError."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {path}: not UTF-8 text") from None
