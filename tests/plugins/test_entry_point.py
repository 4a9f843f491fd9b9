"""A plugin installed as a separate package is found through the entry point."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import testing
from core.plugins.host import ENTRY_POINT_GROUP, installed_names

FIXTURE = Path(__file__).parent.parent / "fixtures" / "socialbot-hello"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-install the fixture package into a folder of its own, put it on sys.path."""
    work = tmp_path_factory.mktemp("hello")
    source = work / "src"
    shutil.copytree(FIXTURE, source)
    target = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    sys.modules.pop("socialbot_hello", None)
    importlib.invalidate_caches()


def test_the_installed_package_declares_the_entry_point(installed: Path) -> None:
    (dist,) = installed.glob("socialbot_hello-*.dist-info")
    assert f"[{ENTRY_POINT_GROUP}]" in (dist / "entry_points.txt").read_text()
    assert "hello" in installed_names()


async def test_an_installed_plugin_is_found_by_name_and_works(
    installed: Path, tmp_path: Path
) -> None:
    async with testing.open_bot(tmp_path, plugins=["help", "hello"], admins=["root"]) as bot:
        chat = testing.FakeAdapter(bot)
        assert await chat.say("/hello fr") == "Bonjour, Alice!"
        assert "/hello [en|fr|de|ja]" in await chat.say("/help")
        await chat.say("hello!")
        assert chat.last.reactions == ["👋"]
        assert "+ hello: Hello in many languages." in await chat.say("/plugins", user="root")
