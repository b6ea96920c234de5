"""Idempotency keys in a Redis store: the claim, one Lua script (the check and the claim
are one atomic step), and the release of keys whose task was never accepted.

`{prefix}:key:{key}` is a hash of the task holding the key (`task_id`, `name`, `lane`:
the handle a later claim returns, even before the task's own row is written), when it
was claimed (`claimed_at`) and, once its task's row was pruned, when that task settled
(`settled_at`, and an expiry: `redis_scripts.PRUNE`), so a key outlives its task's row by
up to `key_ttl`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .keys import CLAIM_GRACE, KeyHolder

if TYPE_CHECKING:
    from redis.client import Pipeline

    from .redis_link import RedisLink

__all__ = ["SCRIPTS", "RedisKeys"]

# The rule of `stores.keys.held`: held while the task's row is live, until `key_ttl` after
# it settled, or, with no row yet, for the grace after the claim. A key not held is taken
# over here.
# ARGV: prefix, key, task id, name, lane, now, key_ttl, grace. Returns nil (claimed) or the
# holder's {task id, name, lane}.
CLAIM_KEY = """
local p, now, ttl = ARGV[1], tonumber(ARGV[6]), tonumber(ARGV[7])
local at = p .. ':key:' .. ARGV[2]
local k = redis.call('HMGET', at, 'task_id', 'name', 'lane', 'claimed_at', 'settled_at')
if k[1] and k[2] and k[3] then
  local f = redis.call('HMGET', p .. ':task:' .. k[1], 'state', 'handed_off', 'settled_at')
  local held
  if f[1] then
    local live = (f[1] == 'pending' or f[1] == 'running' or f[1] == 'scheduled') and f[2] ~= '1'
    local settled = tonumber(f[3] or '')
    held = live or (settled ~= nil and now < settled + ttl)
  elseif k[5] then
    held = now < (tonumber(k[5]) or 0) + ttl
  else
    held = now < (tonumber(k[4]) or 0) + tonumber(ARGV[8])
  end
  if held then
    return {k[1], k[2], k[3]}
  end
end
redis.call('DEL', at)
redis.call('HSET', at, 'task_id', ARGV[3], 'name', ARGV[4], 'lane', ARGV[5], 'claimed_at', ARGV[6])
return false
"""
# ARGV: prefix, key, task id. Frees the key if that task holds it (it was never accepted).
RELEASE_KEY = """
local at = ARGV[1] .. ':key:' .. ARGV[2]
if redis.call('HGET', at, 'task_id') == ARGV[3] then
  redis.call('DEL', at)
end
"""
SCRIPTS = {"claim_key": CLAIM_KEY, "release_key": RELEASE_KEY}


class RedisKeys:
    """The store's key claims and releases, through its `RedisLink` (which loads
    `SCRIPTS`)."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def claim(self, key: str, holder: KeyHolder, ttl: float) -> KeyHolder | None:
        """Take `key` for `holder` (None), or return the task holding it."""
        # A call, not a pipeline: it runs in the request, on the loop for an async endpoint.
        args = [key, holder.task_id, holder.name, holder.lane, repr(time.time())]
        args += [repr(ttl), repr(CLAIM_GRACE)]
        found: Any = self._link.call("claim_key", *args)
        if found is None:
            return None
        task_id, name, lane = (value.decode(errors="replace") for value in found)
        return KeyHolder(task_id, name, lane)

    def release(self, released: list[tuple[str, str]]) -> None:
        """Free these (key, task id) claims, each only if that task still holds the key."""

        def build(pipe: Pipeline) -> None:
            for key, task_id in released:
                self._link.script(pipe, "release_key", [], key, task_id)

        self._link.pipeline(build)
