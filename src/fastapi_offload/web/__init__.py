"""What FastAPI sees: the `OffloadTasks` dependency and the ready-made routers."""
