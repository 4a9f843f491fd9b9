"""Fine-tuning: shared training helpers and the chat model's training (``chat``)."""
