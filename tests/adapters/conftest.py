"""Fixtures the platform tests share; a test overrides one with
``@pytest.mark.parametrize("script", [...])``."""

from __future__ import annotations

import pytest

from core.generation.fake import Script, echo


@pytest.fixture
def script() -> Script:
    """What the fake model answers."""
    return echo


@pytest.fixture
def plugins() -> list[str]:
    """The plugins the bot runs."""
    return ["help", "privacy"]
