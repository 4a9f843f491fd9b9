from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main
from core.errors import ConfigError
from core.logs import SecretMaskingFormatter, mask
from core.settings import PROJECT_BOTS_DIR, available_profiles, load_profile, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "SOCIALBOT_DATA_DIR",
        "SOCIALBOT_BOT",
        "OPENAI_API_KEY",
        "SOCIALBOT_OPENAI_API_KEY",
        "SOCIALBOT_MAX_MESSAGE_CHARS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_environment_and_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOCIALBOT_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("SOCIALBOT_MAX_MESSAGE_CHARS", "500")
    assert load_settings().data_dir == tmp_path / "env"
    assert load_settings().max_message_chars == 500
    assert load_settings(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"
    assert load_settings(data_dir=None).data_dir == tmp_path / "env"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SOCIALBOT_BOT=other\nOPENAI_API_KEY=sk-test-123456\n")
    settings = load_settings()
    assert settings.bot == "other"
    assert settings.openai_api_key.get_secret_value() == "sk-test-123456"
    assert "sk-test-123456" not in repr(settings)


def test_invalid_setting_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOCIALBOT_MAX_MESSAGE_CHARS", "lots")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith("invalid setting SOCIALBOT_MAX_MESSAGE_CHARS:")
    assert "\n" not in str(error.value)


def test_the_default_profile_is_valid() -> None:
    profile = load_profile(PROJECT_BOTS_DIR, "companion")
    assert profile.name == "companion" and profile.model.backend == "auto"
    assert profile.persona.strip() and profile.folder == PROJECT_BOTS_DIR / "companion"
    assert "companion" in available_profiles(PROJECT_BOTS_DIR)


def test_unknown_profile_lists_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('persona = "x"\n')
    with pytest.raises(ConfigError, match=r"'nope' not found .*available: a\)"):
        load_profile(tmp_path, "nope")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('persona = "x"\n[generation]\ntemprature = 0.5\n', "generation.temprature: Extra inputs"),
        ('persona = "x"\n[generation]\ntemperature = 9\n', "generation.temperature: Input should"),
        ('persona = "x"\n[model]\nbackend = "magic"\n', "model.backend: Input should be"),
        ('persona = "x"\n[model]\ndevice = "gpu"\n', "model.device: String should match"),
        ('name = "x"\n', "persona: Field required"),
        ("persona = \n", "cannot read bot profile"),
    ],
)
def test_bad_profiles_fail_with_the_setting_named(
    tmp_path: Path, content: str, expected: str
) -> None:
    (tmp_path / "b.toml").write_text(content)
    with pytest.raises(ConfigError, match=expected) as error:
        load_profile(tmp_path, "b")
    assert "\n" not in str(error.value)


def test_cli_reports_bad_config_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("SOCIALBOT_DB_SYNCHRONOUS", "SOMETIMES")
    assert main(["chat", "--message", "hi", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("socialbot: invalid setting SOCIALBOT_DB_SYNCHRONOUS:")
    assert err.count("\n") == 1


def test_model_device_is_checked_against_what_torch_sees() -> None:
    import torch

    from core.generation.transformers_engine import pick_device

    assert pick_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match=r"device = 'cuda:63', but torch sees \d+ CUDA GPU"):
        pick_device("cuda:63")


def test_cli_unknown_bot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["chat", "--message", "hi", "--bot", "ghost", "--data-dir", str(tmp_path)]) == 2
    assert "bot profile 'ghost' not found" in capsys.readouterr().err


def test_secrets_are_masked_in_logs() -> None:
    import logging

    formatter = SecretMaskingFormatter(["sk-live-abcdef"], "%(message)s")
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "key %s failed", ("sk-live-abcdef",), None
    )
    assert formatter.format(record) == "key *** failed"
    assert mask("a sk-live-abcdef b", ["sk-live-abcdef"]) == "a *** b"


def test_env_example_documents_every_setting() -> None:
    from pydantic import AliasChoices

    from core.settings import ENV_PREFIX, Settings

    text = (PROJECT_BOTS_DIR.parent / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if isinstance(alias, AliasChoices) else ENV_PREFIX + name.upper()
        assert f"{env}=" in text, name
