"""The Prometheus metrics router."""
