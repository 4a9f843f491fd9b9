from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub: every model is packaged or built here.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from core import testing
from core.bot import Bot
from core.generation.fake import FakeGenerator
from core.privacy import Cipher, Privacy, Pseudonymizer
from core.settings import PROJECT_BOTS_DIR, BotProfile, Settings, load_profile


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return testing.settings_for(tmp_path / "data")


@pytest.fixture
def profile() -> BotProfile:
    """The companion, with only the essential plugins (plugin tests add their own)."""
    companion = load_profile(PROJECT_BOTS_DIR, "companion")
    return companion.model_copy(update={"plugins": ("help", "privacy")})


@pytest.fixture
def fake() -> FakeGenerator:
    return FakeGenerator()


@pytest.fixture
async def bot(settings: Settings, profile: BotProfile, fake: FakeGenerator) -> AsyncIterator[Bot]:
    """A bot with the fake generator, embedder and emotion reader (the test kit's)."""
    async with testing.open_bot(
        settings.data_dir, settings=settings, profile=profile, generator=fake
    ) as running:
        yield running


@pytest.fixture
def privacy() -> Privacy:
    return Privacy(Pseudonymizer(b"test-key-0123456789"), Cipher())


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the whole run: the embedded model is converted into it once."""
    return tmp_path_factory.mktemp("model-cache")
