"""Built-in plugins (the plugin API arrives with its own issue)."""
