"""The core: a task's admission, routing, state (the ledger), runs and retries."""
