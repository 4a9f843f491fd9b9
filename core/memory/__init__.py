"""Context memory: the token-budgeted window, rolling summaries, long-term memories
recalled by meaning, facts people state about themselves, and recall evaluation."""
