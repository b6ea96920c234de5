from __future__ import annotations

import time

from fastapi_offload import task


class RateLimited(Exception):
    pass


@task(retries=5, retry_delay=1, retry_backoff=True, retry_on=(ConnectionError, RateLimited))
def sync_contact(contact_id: int) -> None:
    # Waits about 1, 2, 4, 8 and 16 s (each 50-100% of that, at random) between the
    # attempts; a ConnectionError or RateLimited is retried, a ValueError fails at once.
    time.sleep(0.01)  # stands in for a CRM API call
