"""Remote backends. `fastapi_offload.backends.base` holds the protocol; adapters load lazily."""
