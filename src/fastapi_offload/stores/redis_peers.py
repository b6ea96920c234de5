"""What the processes sharing a Redis store publish to each other (`stores.peers`), and
the dashboard's rows: the Lua scripts that write and read them, and the decoding of what
they read back (a process's figures, a task's row), each checked by `stores.peers`."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from .peers import (
    EXPIRY_LEASES,
    FIGURES_MAX,
    PROCESSES_MAX,
    RESULT_MAX,
    TEXT_MAX,
    ProcessFigures,
    StoredTask,
    decode_figures,
    stored_task,
)

if TYPE_CHECKING:
    from redis.client import Pipeline

    from .redis_link import Decoder, RedisLink

__all__ = ["SCRIPTS", "RedisPeers"]

# The processes' figures (`stores.peers`): a hash `{prefix}:processes` (owner -> JSON) and a
# sorted set `{prefix}:processes:until` (owner, scored by when they expire).
# ARGV: prefix, me, the JSON ("": remove mine), now, until.
PUBLISH = """
local p, me, text, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local hash, expiry = p .. ':processes', p .. ':processes:until'
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', expiry, '-inf', '(' .. now, 'LIMIT', 0, 100)) do
  redis.call('HDEL', hash, owner)
  redis.call('ZREM', expiry, owner)
end
if text == '' then
  redis.call('HDEL', hash, me)
  redis.call('ZREM', expiry, me)
else
  redis.call('HSET', hash, me, text)
  redis.call('ZADD', expiry, ARGV[5], me)
end
"""
# ARGV: prefix, now, most, longest. The live processes' [owner, JSON] pairs; a JSON
# longer than a reader accepts is not sent.
PROCESSES = """
local p, now = ARGV[1], ARGV[2]
local out = {}
local owners = redis.call('ZRANGEBYSCORE', p .. ':processes:until', now, '+inf', 'LIMIT', 0,
  tonumber(ARGV[3]))
for _, owner in ipairs(owners) do
  local text = redis.call('HGET', p .. ':processes', owner)
  if text and string.len(text) <= tonumber(ARGV[4]) then
    out[#out + 1] = {owner, text}
  end
end
return out
"""
# ARGV: prefix, limit, text cut, result cut. The dashboard's rows: up to `limit` live and
# `limit` newest settled tasks, their texts cut here, so a large result never travels.
RECENT = """
local p, limit, cut, short = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
local function add(ids)
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', p .. ':task:' .. id, 'name', 'state', 'lane', 'created_at',
      'started_at', 'finished_at', 'attempts', 'error', 'result', 'progress',
      'progress_message', 'ran_by', 'handed_off')
    if f[1] then
      for i, n in pairs({[1] = cut, [3] = cut, [8] = cut, [9] = short, [11] = short,
        [12] = cut}) do
        if f[i] then f[i] = string.sub(f[i], 1, n) end
      end
      out[#out + 1] = {id, f}
    end
  end
end
add(redis.call('ZRANGE', KEYS[1], 0, limit - 1))
add(redis.call('ZREVRANGE', KEYS[2], 0, limit - 1))
return out
"""
SCRIPTS = {"publish": PUBLISH, "processes": PROCESSES, "recent": RECENT}


class RedisPeers:
    """The store's publication and reads of the processes' figures and of the dashboard's
    rows, through its `RedisLink` (which loads `SCRIPTS`), on the live and settled sorted
    sets `live` and `settled`; a row or an entry that cannot be read is skipped
    (`decoded`)."""

    def __init__(self, link: RedisLink, live: str, settled: str, decoded: Decoder) -> None:
        self._link, self._live, self._settled, self._decoded = link, live, settled, decoded

    def publish(self, pipe: Pipeline, owner: str, figures: str, now: float, lease: float) -> None:
        """Queue in `pipe` the publication of `owner`'s `figures` (JSON; "": remove them)."""
        until = repr(now + EXPIRY_LEASES * lease)
        self._link.script(pipe, "publish", [], owner, figures, repr(now), until)

    def processes(self, me: str) -> list[ProcessFigures]:
        def build(pipe: Pipeline) -> None:
            self._link.script(pipe, "processes", [], repr(time.time()), PROCESSES_MAX, FIGURES_MAX)

        mine = me.encode()
        found = (
            self._decoded(
                f"process {owner[:100]!r}", partial(decode_figures, text, here=owner == mine)
            )
            for owner, text in self._link.pipeline(build)[0]
        )
        return [figures for figures in found if figures is not None]

    def recent(self, limit: int, me: str) -> list[StoredTask]:
        # One character past each cut: the row then shows that it was cut ("…").
        def build(pipe: Pipeline) -> None:
            keys = [self._live, self._settled]
            self._link.script(pipe, "recent", keys, limit, TEXT_MAX + 1, RESULT_MAX + 1)

        found = (
            self._decoded(f"task {raw_id[:40]!r}", partial(_stored, raw_id, fields, me))
            for raw_id, fields in self._link.pipeline(build)[0]
        )
        return [task for task in found if task is not None]


def _stored(raw_id: bytes, fields: list[bytes | None], owner: str) -> StoredTask:
    """A row of the `recent` script (Redis holds text), checked by `stored_task`."""
    name, state, lane, created, started, finished, attempts, error, result = fields[:9]
    progress, message, ran_by, handed_off = fields[9:]

    def text(value: bytes | None) -> str | None:
        # A cut may split a character: shown as a replacement character, not refused.
        return None if value is None else value.decode(errors="replace")

    def number(value: bytes | None) -> float | None:
        return None if value is None else float(value)

    return stored_task((
        raw_id.decode(), text(name), text(state), text(lane), number(created),
        number(started), number(finished), int(attempts or b""), text(error), text(result),
        number(progress), text(message), text(ran_by), handed_off == b"1",
    ), owner)  # fmt: skip
