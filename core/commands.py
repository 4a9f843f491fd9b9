"""Recognising commands: ``/name args``, the same on every platform.

The commands themselves are declared by plugins (``core.plugins``); the built-in
ones are in ``plugins/help.py`` and ``plugins/privacy.py``.
"""

from __future__ import annotations

import re

_COMMAND = re.compile(r"^/([A-Za-z][\w-]{0,31})(?:@\S+)?(?:\s+(.*))?$", re.DOTALL)


def parse(text: str) -> tuple[str, str] | None:
    """``"/name args"`` -> ``("name", "args")``; Telegram's ``/name@botname`` too."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    return match.group(1).lower(), (match.group(2) or "").strip()
