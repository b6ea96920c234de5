"""Reclaim in a Redis store: the live tasks of owners whose lease ran out, or whose process
is gone from this host (`stores.lease_owner`), are taken over (a saved call: requeued to
this owner) or settled as interrupted, exactly once across processes, by one Lua script;
and this owner's strays are found (see `RedisReclaim.reclaim`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import redis

from .lease_owner import OWNER_ID_MAX, gone_owners
from .texts import interrupted_reason, utc_text

if TYPE_CHECKING:
    from redis.client import Pipeline

    from .redis_link import RedisLink

__all__ = ["SCRIPTS", "Claimed", "RedisReclaim"]

logger = logging.getLogger("fastapi_offload")

# A claimed row: its id, 1 if it was requeued to this owner (else settled as interrupted),
# and its fields, flat (name, value, name, value, ...); the script answers a list of three.
Claimed = tuple[bytes, int, list[bytes]]

# Exactly once across processes: the scan and every claim happen in one atomic script.
# ARGV: prefix, me, now, the new lease_until, the two reasons (`%s`: owner, ran-out time),
# the two reasons for an owner found gone (`%s`: owner), then the owners whose process
# is gone (`stores.lease_owner`): their tasks are claimed whatever their lease.
# A cancel request follows a requeued task to its new owner. A scheduled task with a saved
# call (requeue-able or not: it never started) stays scheduled under its new owner.
RECLAIM = """
local function utc(t)  -- as Python's strftime('%Y-%m-%d %H:%M:%S'): Redis's Lua has no os.date
  local s = math.floor(t)
  local days, r = math.floor(s / 86400), s % 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  return string.format('%04d-%02d-%02d %02d:%02d:%02d', yoe + era * 400 + (m <= 2 and 1 or 0),
    m, doy - math.floor((153 * mp + 2) / 5) + 1, math.floor(r / 3600), math.floor(r % 3600 / 60),
    r % 60)
end
local p, me, now, lease, live, settled = ARGV[1], ARGV[2], ARGV[3], ARGV[4], KEYS[1], KEYS[2]
local out = {}
local function claim(id, key, f, why)
  local owned = p .. ':owned:' .. f[1]
  redis.call('SREM', owned, id)
  redis.call('SREM', p .. ':cancels:' .. f[1], id)
  if redis.call('SCARD', owned) == 0 then
    redis.call('SREM', p .. ':owners', f[1])
  end
  local scheduled = f[5] == 'scheduled'
  local requeued = (f[2] == '1' or scheduled) and f[3] ~= false
  if requeued then
    redis.call('HSET', key, 'state', scheduled and 'scheduled' or 'pending', 'owner', me,
      'lease_until', lease)
    redis.call('ZADD', live, lease, id)
    redis.call('SADD', p .. ':owned:' .. me, id)
    redis.call('SADD', p .. ':owners', me)
    if f[4] then
      redis.call('SADD', p .. ':cancels:' .. me, id)
    end
  else
    redis.call('HDEL', key, 'owner', 'lease_until', 'payload', 'cancel_requested')
    redis.call('HSET', key, 'state', 'interrupted', 'finished_at', now, 'settled_at', now,
      'error', why(f[2] == '1'))
    redis.call('ZREM', live, id)
    redis.call('ZADD', settled, now, id)
  end
  out[#out + 1] = {id, requeued and 1 or 0, redis.call('HGETALL', key)}
end
local function fields(key)
  return redis.call('HMGET', key, 'owner', 'requeue', 'payload', 'cancel_requested', 'state')
end
local expired = redis.call('ZRANGEBYSCORE', live, '-inf', '(' .. now, 'WITHSCORES', 'LIMIT', 0, 500)
for j = 1, #expired, 2 do
  local id, key = expired[j], p .. ':task:' .. expired[j]
  local f = fields(key)
  if not f[1] then
    redis.call('ZREM', live, id)  -- no leased row behind it (evicted): nothing to settle
  elseif f[1] ~= me then
    local ran_out = utc(tonumber(expired[j + 1]))
    claim(id, key, f, function(saved)
      return string.format(saved and ARGV[5] or ARGV[6], f[1], ran_out)
    end)
  end
end
-- At most 500 tasks of gone owners looked at per call, as for expired leases: one call
-- blocks Redis for a few ms at most; what is left waits for the next pass.
local room = 500
for k = 9, #ARGV do
  local gone = ARGV[k]
  local owned = p .. ':owned:' .. gone
  if gone ~= me and room > 0 then
    local ids = redis.call('SRANDMEMBER', owned, room)
    room = room - #ids
    for _, id in ipairs(ids) do
      local key = p .. ':task:' .. id
      local f = fields(key)
      if f[1] == gone and redis.call('ZSCORE', live, id) then
        claim(id, key, f, function(saved)
          return string.format(saved and ARGV[7] or ARGV[8], gone)
        end)
      else
        redis.call('SREM', owned, id)  -- settled or claimed already: not its any more
      end
    end
    if redis.call('SCARD', owned) == 0 then
      redis.call('SREM', p .. ':owners', gone)
    end
  end
end
return out
"""
SCRIPTS = {"reclaim": RECLAIM}


class RedisReclaim:
    """The store's reclaim, through its `RedisLink` (which loads `SCRIPTS`), on the live
    and settled sorted sets `live` and `settled`."""

    def __init__(self, link: RedisLink, live: str, settled: str) -> None:
        self._link, self._live, self._settled = link, live, settled

    def reclaim(
        self,
        owner: str,
        lease: float,
        here: Collection[str],
        prune: Callable[[Pipeline, float], None],
        who: object,
    ) -> list[Claimed]:
        """Claim for `owner` (leasing requeued rows `lease` seconds) what `RECLAIM` claims,
        then its strays, not those of `here` (the ids of this process's records). `prune`
        queues the store's pruning in the same round trip; `who` is what logs name."""
        now = time.time()
        reasons = [interrupted_reason("%s", "%s", requeue) for requeue in (True, False)]
        found = utc_text(now)
        reasons += [
            interrupted_reason("%s", None, saved, found_gone=found) for saved in (True, False)
        ]
        keys, args = [self._live, self._settled], [owner, repr(now), repr(now + lease)]
        args += [*reasons, *self._gone(owner, who)]

        def build(pipe: Pipeline) -> None:
            self._link.script(pipe, "reclaim", keys, *args)
            prune(pipe, now)

        claimed: list[Claimed]
        claimed, *_ = self._link.pipeline(build)
        try:
            claimed += self._strays(owner, here, {raw_id for raw_id, _, _ in claimed})
        except (redis.RedisError, OSError) as exc:
            logger.warning("task store %s: could not look for tasks claimed earlier: %s", who, exc)
        return claimed

    def _gone(self, me: str, who: object) -> list[str]:
        # Owners whose process is gone from this host lose their tasks now, not when their
        # lease runs out. A sample, so a set grown large costs one bounded read per pass.
        key = f"{self._link.prefix}:owners"
        [members] = self._link.pipeline(lambda pipe: pipe.srandmember(key, 100))
        owners = [
            owner
            for raw in members
            if len(raw) <= OWNER_ID_MAX and (owner := raw.decode("utf-8", "replace")) != me
        ]
        gone = gone_owners(owners)
        for owner in gone:
            logger.info(
                "task store %s: the process of owner %s is gone from this host: its tasks "
                "are reclaimed now, not when its lease runs out", who, owner,
            )  # fmt: skip
        return gone

    def _strays(self, me: str, here: Collection[str], claimed: set[bytes]) -> list[Claimed]:
        # Rows with a saved call (requeue-able, or scheduled) this owner claimed but never
        # took up (a reply lost, or the caller failed after the script ran), or left to the
        # store at a shutdown before it opened again: returned instead of renewed forever.
        link = self._link
        assert link.client is not None
        mine = {task_id.encode() for task_id in list(here)}
        found = []
        members: set[bytes] = link.client.smembers(  # type: ignore[assignment]  # bytes: no decoding
            f"{link.prefix}:owned:{me}"
        )
        for raw_id in members:
            if raw_id in mine or raw_id in claimed:
                continue
            key = f"{link.prefix}:task:{raw_id.decode()}"
            row: dict[bytes, bytes] = link.client.hgetall(key)  # type: ignore[assignment]  # sync client
            flat = [item for pair in row.items() for item in pair]
            state = row.get(b"state")
            live = state in (b"pending", b"running", b"scheduled")
            saved = row.get(b"requeue") == b"1" or state == b"scheduled"
            if live and saved and b"payload" in row:
                found.append((raw_id, 1, flat))
        return found
