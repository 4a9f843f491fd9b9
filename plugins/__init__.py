"""Built-in plugins. Each module exports ``plugin = Plugin(...)``; see docs/plugins.md."""
