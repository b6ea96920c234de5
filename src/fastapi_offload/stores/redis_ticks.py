"""Periodic tasks' ticks in a Redis store: the claim, one Lua script, and the read of the
last ticks, checked by `stores.ticks.check_tick` (the rule of a claim: `stores.ticks`).

`{prefix}:tick:{name}` is a hash per periodic task: its last tick (`tick`), when that was
claimed (`claimed_at`), and the task and tick that ran last (`task_id`, `task_tick`).
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from .base import Tick, TickClaim
from .ticks import check_tick

if TYPE_CHECKING:
    from redis.client import Pipeline

    from .redis_link import Decoder, RedisLink

__all__ = ["SCRIPTS", "RedisTicks"]

# ARGV: prefix, name, tick, task_id, overlap ('1' or '0'), now. Returns {1, ''} (claimed,
# run it), {1, running id} (claimed, not run: the previous task is live), or {0, ''}.
# The tick times are compared as numbers: `repr` of a float reads back exactly.
CLAIM_TICK = """
local p = ARGV[1]
local key = p .. ':tick:' .. ARGV[2]
local f = redis.call('HMGET', key, 'tick', 'task_id')
if f[1] and tonumber(f[1]) >= tonumber(ARGV[3]) then
  return {0, ''}
end
if f[2] and ARGV[5] ~= '1' then
  local t = redis.call('HMGET', p .. ':task:' .. f[2], 'state', 'handed_off')
  if (t[1] == 'pending' or t[1] == 'running' or t[1] == 'scheduled') and t[2] ~= '1' then
    redis.call('HSET', key, 'tick', ARGV[3], 'claimed_at', ARGV[6])
    return {1, f[2]}
  end
end
redis.call('HSET', key, 'tick', ARGV[3], 'task_id', ARGV[4], 'task_tick', ARGV[3],
  'claimed_at', ARGV[6])
return {1, ''}
"""
SCRIPTS = {"tick": CLAIM_TICK}
TICK_FIELDS = ("tick", "claimed_at", "task_id", "task_tick")


class RedisTicks:
    """The store's tick claims and reads, in threads, through its `RedisLink` (which
    loads `SCRIPTS`); a stored tick that cannot be read is skipped (`decoded`)."""

    def __init__(self, link: RedisLink, decoded: Decoder) -> None:
        self._link, self._decoded = link, decoded

    def claim(self, name: str, tick: float, task_id: str, overlap: bool) -> TickClaim:
        def build(pipe: Pipeline) -> None:
            flag = "1" if overlap else "0"
            self._link.script(pipe, "tick", [], name, repr(tick), task_id, flag, repr(time.time()))

        [(claimed, running)] = self._link.pipeline(build)
        return TickClaim(bool(claimed), running.decode() if running else None)

    def read(self, names: list[str]) -> list[Tick]:
        key, link = f"{self._link.prefix}:tick:", self._link
        stored = link.pipeline(lambda pipe: [pipe.hmget(key + n, TICK_FIELDS) for n in names])
        ids = {fields[2] for fields in stored if fields[0] is not None and fields[2] is not None}
        asked = sorted(ids)
        tasks: dict[bytes, list[bytes | None]] = {}
        if asked:  # the state and lane of the task each ran last: one more round trip
            task = f"{link.prefix}:task:"
            keys = [task + i.decode("utf-8", "replace") for i in asked]
            answers = link.pipeline(lambda pipe: [pipe.hmget(k, "state", "lane") for k in keys])
            tasks = dict(zip(asked, answers, strict=True))
        found = []
        for name, fields in zip(names, stored, strict=True):
            if fields[0] is None:
                continue  # no tick of this name yet
            state, lane = tasks.get(fields[2], (None, None))
            decode = partial(_tick, name, [*fields, state, lane])
            if (tick := self._decoded(f"the tick of {name[:100]!r}", decode)) is not None:
                found.append(tick)
        return found


def _tick(name: str, fields: list[bytes | None]) -> Tick:
    """A tick hash's fields (`TICK_FIELDS`), then its task's state and lane, as a `Tick`:
    Redis holds text, decoded here and checked by `check_tick` (`ValueError` if bad)."""
    tick, claimed_at, task_id, task_tick, state, lane = fields

    def number(value: bytes | None) -> float | None:
        return None if value is None else float(value)

    def text(value: bytes | None) -> str | None:
        return None if value is None else value.decode()

    values = (number(tick), number(claimed_at), text(task_id), number(task_tick))
    return check_tick(name, (*values, text(state), text(lane)))
