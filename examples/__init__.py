"""Runnable examples of fastapi-offload."""
