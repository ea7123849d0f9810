"""pocketserve: one OpenAI-compatible server for small models."""

__version__ = "0.1.0"
