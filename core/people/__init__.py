"""People: who the bot answers (access) and people's rights over their data."""
