"""One exception hierarchy for the whole project.

A :class:`UserError` carries a message meant for the person who caused it; the
pipeline answers with it. Anything else is logged with its traceback and the
user gets a short apology.
"""

from __future__ import annotations


class SocialbotError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(SocialbotError):
    """Settings or a bot profile are invalid; the message names the setting."""


class UserError(SocialbotError):
    """Something the user can fix; ``str(error)`` is shown to them."""


class BackendError(SocialbotError):
    """The language-model backend failed (server down, timeout, bad output)."""


class BusyError(BackendError):
    """The backend is answering as many people as it may, and its queue is full."""


class ModelNotFoundError(ConfigError):
    """A model named in a profile cannot be found on this machine."""
