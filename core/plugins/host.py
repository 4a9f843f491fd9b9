"""Finding, running and isolating plugins.

Plugins are found by name: an installed package's entry point in the
``socialbot.plugins`` group, a module of the built-in ``plugins`` package, or a dotted
module path. A bot profile lists the ones it runs (``plugins = [...]``); admins
can list, enable, disable and reload them while the bot runs (``/plugins``,
``/plugin enable NAME``...), and that choice is kept across restarts.

The host's :meth:`PluginHost.route` and :meth:`PluginHost.run_hooks` are two stages of
the turn: every command, the core's included, is answered by ``route`` from the one
command table (a plugin's commands are in it while the plugin runs).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import os
import sys
import time
import types
from collections import defaultdict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from core import commands
from core.commands import Caller, Command, Permission, command
from core.errors import ConfigError
from core.plugins import (
    STOP,
    Context,
    Hook,
    Job,
    JobContext,
    Plugin,
    PluginServices,
    UsageError,
    parse_rate,
)
from core.turn import EndTurn, Turn

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "socialbot.plugins"
BUILTIN_PACKAGE = "plugins"
ESSENTIAL = frozenset({"privacy"})
"""Always on: people's control over their data does not depend on the operator."""
CORE = Plugin("core", description="the core's own commands")
"""Whose context the core's own commands (``/status``, ``/block``...) are given."""


class HostServices(PluginServices, Protocol):
    """What the host uses of the bot beyond what plugins get."""

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...


def find_plugin(name: str) -> tuple[Plugin, types.ModuleType | None]:
    """The plugin called ``name``: an entry point, a built-in, or a module path."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            loaded = entry.load()
            return _plugin_of(loaded, name), sys.modules.get(entry.module)
    candidates = [f"{BUILTIN_PACKAGE}.{name}"] if "." not in name else [name]
    for module_name in candidates:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and module_name.startswith(error.name):
                continue
            raise
        return _plugin_of(module, name), module
    raise ConfigError(
        f"plugin {name!r} not found (built-in: {', '.join(builtin_names())}; installed: "
        f"{', '.join(installed_names()) or 'none'})"
    )


def _plugin_of(thing: Any, name: str) -> Plugin:
    plugin = thing if isinstance(thing, Plugin) else getattr(thing, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise ConfigError(f"plugin {name!r} does not export `plugin = Plugin(...)`")
    return plugin


def builtin_names() -> list[str]:
    import pkgutil

    package = importlib.import_module(BUILTIN_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.ispkg)


def installed_names() -> list[str]:
    return sorted(e.name for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def plugin_settings(plugin: Plugin, values: dict[str, Any]) -> Any:
    """The plugin's settings model from the profile's ``[plugin.NAME]`` table, with
    ``SOCIALBOT_PLUGIN_<NAME>_<FIELD>`` environment variables on top."""
    if plugin.settings_model is None:
        return None
    data = dict(values)
    prefix = f"SOCIALBOT_PLUGIN_{plugin.name.upper().replace('-', '_')}_"
    for field_name in plugin.settings_model.model_fields:
        env = os.environ.get(prefix + field_name.upper())
        if env is not None:
            data[field_name] = env
    try:
        return plugin.settings_model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"[plugin.{plugin.name}] {where}: {first['msg']}") from None


@dataclass
class Loaded:
    spec: str
    """How it was asked for: a name, or a module path (what finds it again)."""
    plugin: Plugin
    module: types.ModuleType | None
    settings: Any
    state: dict[str, Any] = field(default_factory=dict)
    jobs: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


class RateLimiter:
    """At most ``limit`` uses per ``window`` seconds for each key."""

    def __init__(self) -> None:
        self._uses: dict[Any, deque[float]] = defaultdict(deque)

    def wait_needed(self, key: Any, limit: int, window: float) -> float:
        """0 if allowed now (the use is counted), else the seconds until it is."""
        now = time.monotonic()
        uses = self._uses[key]
        while uses and uses[0] <= now - window:
            uses.popleft()
        if len(uses) >= limit:
            return uses[0] + window - now
        uses.append(now)
        return 0.0


class PluginHost:
    def __init__(self, services: HostServices) -> None:
        self.services = services
        self.table = services.commands
        self.loaded: dict[str, Loaded] = {}
        self.timeout = services.settings.plugin_timeout_s
        self.limiter = RateLimiter()
        self.user_rate = parse_rate(services.settings.command_rate)
        for name, func, help_ in (
            ("plugins", self._list, "the plugins there are, running or not (admin)"),
            ("plugin", self._manage, "enable, disable or reload a plugin (admin)"),
        ):
            self.table.add(
                command(
                    func,
                    name=name,
                    help=help_,
                    permission=Permission.ADMIN,
                    owner=CORE.name,
                    suggest=self._suggest,
                )
            )

    # --- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        specs = list(dict.fromkeys([*ESSENTIAL, *self.services.profile.plugins]))
        overrides = await self._overrides()
        specs += [spec for spec, on in overrides.items() if on and spec not in specs]
        for spec in specs:
            plugin, module = find_plugin(spec)  # a missing plugin stops the start: config
            if not overrides.get(spec, True) and plugin.name not in ESSENTIAL:
                continue  # an admin disabled it
            if plugin.name in self.loaded:
                continue
            await self._start(Loaded(spec, plugin, module, self._settings(spec, plugin)))

    def _settings(self, spec: str, plugin: Plugin) -> Any:
        tables = self.services.profile.plugin
        return plugin_settings(plugin, tables.get(spec, tables.get(plugin.name, {})))

    def _job_context(self, loaded: Loaded) -> JobContext:
        return JobContext(self.services, loaded.plugin, loaded.settings, loaded.state)

    async def _start(self, loaded: Loaded) -> bool:
        context = self._job_context(loaded)
        for setup in loaded.plugin.setups:
            ok, _ = await self._isolated(loaded.plugin.name, "setup", setup(context))
            if not ok:
                log.error("plugin %s did not start", loaded.plugin.name)
                return False
        # a command another plugin (or the core) already answers is never run: the
        # table warns of it
        for plugin_command in loaded.plugin.commands:
            self.table.add(plugin_command)
        self.loaded[loaded.plugin.name] = loaded
        loaded.jobs = [
            self.services.spawn(self._run_job(loaded, job)) for job in loaded.plugin.jobs
        ]
        log.info("plugin %s started", loaded.plugin.name)
        return True

    async def _stop(self, name: str) -> None:
        loaded = self.loaded.pop(name, None)
        if loaded is None:
            return
        self.table.remove_owner(name)
        for other in self.loaded.values():  # a name it held may be another plugin's now
            for freed in other.plugin.commands:
                if self.table.get(freed.name) is None:
                    self.table.add(freed)
        # Jobs finish the run they are in (within the plugin time limit), then stop:
        # cancelling one in the middle of a database read would leave the read open.
        loaded.stopping.set()
        await asyncio.gather(*loaded.jobs, return_exceptions=True)
        context = self._job_context(loaded)
        for teardown in loaded.plugin.teardowns:
            await self._isolated(name, "teardown", teardown(context))

    async def stop(self) -> None:
        for name in list(self.loaded):
            await self._stop(name)

    async def _run_job(self, loaded: Loaded, job: Job) -> None:
        context = self._job_context(loaded)
        name = f"job {job.func.__name__}"
        while not loaded.stopping.is_set():
            try:
                await asyncio.wait_for(loaded.stopping.wait(), _seconds_until(job))
                return
            except TimeoutError:
                pass
            await self._isolated(loaded.plugin.name, name, job.func(context))

    # --- isolation -----------------------------------------------------------------------
    async def _isolated(self, plugin: str, what: str, call: Any) -> tuple[bool, Any]:
        """Await ``call``; an error or a timeout is logged and reported as (False, None)."""
        try:
            async with asyncio.timeout(self.timeout):
                return True, await call
        except UsageError:
            raise
        except TimeoutError:
            log.error(
                "plugin %s: %s took longer than %g s and was cut off", plugin, what, self.timeout
            )
        except Exception:
            log.exception("plugin %s: %s failed", plugin, what)
        return False, None

    # --- turns ---------------------------------------------------------------------------
    def _context(self, owner: str, turn: Turn) -> Context:
        loaded = self.loaded.get(owner)
        if loaded is None:  # the core's own commands
            return Context(self.services, CORE, None, {}, turn)
        return Context(self.services, loaded.plugin, loaded.settings, loaded.state, turn)

    async def route(self, turn: Turn) -> None:
        """Answer a command from the table (raising :class:`EndTurn`); return for anything
        else."""
        parsed = commands.parse(turn.message.text)
        if parsed is None:
            return
        name, args = parsed
        found = self.table.get(name)
        if found is None:
            raise EndTurn(f"unknown command /{name}", f"I don't know /{name}. Try /help.")
        if found.admin and not self.services.access.is_admin(turn.message.speaker):
            raise EndTurn(f"/{name} refused", f"Only an admin of this bot can use /{name}.")
        wait = 0.0 if found.admin else self._rate_wait(turn, found)
        if wait:
            raise EndTurn(
                f"/{name} rate limited",
                f"Slow down a little: you can use /{name} again in {wait:.0f} s.",
            )
        ctx = self._context(found.owner, turn)
        ctx.args = args
        try:
            values = found.parse(args)
        except UsageError as error:
            raise EndTurn(f"/{name} usage", f"{error}. Usage: {found.usage}") from None
        ok, result = await self._isolated(found.owner, f"/{name}", found.func(ctx, **values))
        if not ok:
            raise EndTurn(
                f"/{name} failed",
                f"Sorry, /{name} ran into a problem. The bot's operator can see what happened "
                "in the log.",
            )
        raise EndTurn(f"command /{name}", result if isinstance(result, str) else None)

    def _rate_wait(self, turn: Turn, asked: Command) -> float:
        who = (turn.message.place.platform, turn.user_key)
        limit, window = self.user_rate
        wait = self.limiter.wait_needed(who, limit, window)
        if not wait and asked.rate is not None:
            wait = self.limiter.wait_needed((*who, asked.name), *asked.rate)
        return max(wait, 1.0) if wait else 0.0

    async def run_hooks(self, turn: Turn) -> None:
        """Offer the message to every matching hook, highest priority first."""
        hooks: list[Hook] = sorted(
            (hook for loaded in self.loaded.values() for hook in loaded.plugin.hooks),
            key=lambda h: -h.priority,
        )
        for hook in hooks:
            if hook.plugin not in self.loaded:  # disabled by an earlier hook's command
                continue
            ctx = self._context(hook.plugin, turn)
            try:
                if not hook.matcher(ctx):
                    continue
            except Exception:
                log.exception("plugin %s: matcher %s failed", hook.plugin, hook.matcher)
                continue
            ok, result = await self._isolated(hook.plugin, hook.func.__name__, hook.func(ctx))
            if not ok:
                continue  # the next hooks and the model still answer
            if result is STOP:
                raise EndTurn(f"stopped by plugin {hook.plugin}", None)
            if isinstance(result, str) and result:
                raise EndTurn(f"answered by plugin {hook.plugin}", result)

    # --- admin ---------------------------------------------------------------------------
    async def _list(self, ctx: Caller) -> str:
        """/plugins: what there is, running or not."""
        available = sorted({*builtin_names(), *installed_names(), *self.loaded})
        lines = ["Plugins (+ running, - available):"]
        for plugin_name in available:
            mark = "+" if plugin_name in self.loaded else "-"
            loaded = self.loaded.get(plugin_name)
            about = f": {loaded.plugin.description}" if loaded and loaded.plugin.description else ""
            lines.append(f"{mark} {plugin_name}{about}")
        return "\n".join(lines)

    def _suggest(self, param: str) -> list[str]:
        """/plugin's NAME: the plugins there are (running, built in, installed)."""
        if param != "name":
            return []
        return sorted({*builtin_names(), *installed_names(), *self.loaded})

    async def _manage(
        self,
        ctx: Caller,
        action: Literal["enable", "disable", "reload"] | None = None,
        name: str = "",
    ) -> str:
        """/plugin enable|disable|reload NAME."""
        return await self._change(action or "", name)

    async def _change(self, action: str, target: str) -> str:
        target = target.strip()
        if action not in ("enable", "disable", "reload") or not target:
            return "Usage: /plugin enable|disable|reload NAME"
        running = self.loaded.get(target) or next(
            (loaded for loaded in self.loaded.values() if loaded.spec == target), None
        )
        if action == "disable":
            if running is None:
                return f"{target} is not running."
            if running.plugin.name in ESSENTIAL:
                return f"{target} is always on: it is how people control their data."
            await self._stop(running.plugin.name)
            await self._remember(running.spec, False)
            return f"Disabled {target}."
        if action == "enable" and running is not None:
            return f"{target} is already running."
        spec = running.spec if running is not None else target
        if running is not None:  # reload: stop the old code before loading the new
            await self._stop(running.plugin.name)
        try:
            plugin, module = find_plugin(spec)
            if action == "reload" and module is not None:
                module = importlib.reload(module)
                plugin = _plugin_of(module, spec)
            settings = self._settings(spec, plugin)
        except ConfigError as error:
            return str(error)
        except Exception as error:  # a broken plugin file must not take the bot down
            log.exception("plugin %s could not be loaded", spec)
            return f"{target} could not be loaded: {type(error).__name__}: {error}"
        if not await self._start(Loaded(spec, plugin, module, settings)):
            return f"{target} failed to start; see the log."
        await self._remember(spec, True)
        return f"{'Reloaded' if action == 'reload' else 'Enabled'} {target}."

    async def _remember(self, name: str, enabled: bool) -> None:
        async with self.services.store.transaction() as db:
            await db.execute(
                "INSERT INTO plugin_state (bot, plugin, enabled) VALUES (?, ?, ?)"
                " ON CONFLICT (bot, plugin) DO UPDATE SET enabled = excluded.enabled",
                (self.services.profile.name, name, int(enabled)),
            )

    async def _overrides(self) -> dict[str, bool]:
        rows = await self.services.store.rows(
            "SELECT plugin, enabled FROM plugin_state WHERE bot = ?", (self.services.profile.name,)
        )
        return {row[0]: bool(row[1]) for row in rows}


def _seconds_until(job: Job) -> float:
    if job.every is not None:
        return job.every
    assert job.at is not None
    now = datetime.now(UTC)
    next_run = datetime.combine(now.date(), job.at, tzinfo=UTC)
    if next_run <= now:
        next_run += timedelta(days=1)
    return (next_run - now).total_seconds()
