"""Stores: where task statuses are kept (memory, SQLite, Redis)."""
