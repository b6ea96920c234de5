"""Benchmarks of fastapi-offload against what users would pick instead (`scripts/bench`)."""
