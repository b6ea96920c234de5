"""The Lua scripts that write `RedisStore`'s task rows: upsert, renew, prune, cancel. Each
runs atomically inside Redis (layout version 1: a hash per task, the `live` and `settled`
sorted sets, an `owned` and a `cancels` set per owner, and an `owners` set of the owners
that lease live tasks). The other scripts are with the parts they serve:
`stores.redis_reclaim`, `stores.redis_peers`, `stores.redis_keys`, `stores.redis_ticks`."""

from __future__ import annotations

__all__ = ["SCRIPTS"]

# Bound to the lease holder (SQLite's `WHERE owner = ?`): a row another process
# reclaimed, or one already settled, is never changed by a process that stalled past its
# lease; a new row is written (without the DEL and ZREM an existing one needs: half of
# every task's writes are new rows). A cancel request (not a row field) is kept while the row
# stays live: the owner may not have read it yet.
# ARGV: prefix, me, the JSON of the field names, the JSON of the rows, then the saved
# calls (`stores.rows.redis_rows`). One JSON text for a batch of rows: a few arguments for
# the client to send instead of ~30 a row, and cjson decodes it in C.
UPSERT = """
local p, me, live, settled = ARGV[1], ARGV[2], KEYS[1], KEYS[2]
local names, rows = cjson.decode(ARGV[3]), cjson.decode(ARGV[4])
local owned, cancels = p .. ':owned:' .. me, p .. ':cancels:' .. me
local null, leasing = cjson.null, false
for _, row in ipairs(rows) do
  local id, lease, done = row[1], row[2], row[3]
  local key = p .. ':task:' .. id
  -- `name` is in every row: without it, there is no row (a new task's first write)
  local f = redis.call('HMGET', key, 'owner', 'cancel_requested', 'name')
  local new = not f[3]
  if f[1] == me or new then
    local set = {}
    for j, name in ipairs(names) do
      local value = row[j + 3]
      if value ~= null then
        set[#set + 1] = name
        -- a number is the position of the row's saved call among the arguments
        set[#set + 1] = type(value) == 'number' and ARGV[4 + value] or value
      end
    end
    if not new then  -- the fields this write leaves out (now None) go
      redis.call('DEL', key)
    end
    redis.call('HSET', key, unpack(set))
    if lease ~= '' then
      leasing = true
      redis.call('ZADD', live, lease, id)
      if not new then
        redis.call('ZREM', settled, id)
      end
      redis.call('SADD', owned, id)
      if f[2] then
        redis.call('HSET', key, 'cancel_requested', f[2])
      end
    else
      redis.call('ZREM', live, id)
      redis.call('ZADD', settled, done, id)
      redis.call('SREM', owned, id)
      redis.call('SREM', cancels, id)
    end
  end
end
if leasing then
  redis.call('SADD', p .. ':owners', me)
end
"""
RENEW = """
local p, me, lease, live = ARGV[1], ARGV[2], ARGV[3], KEYS[1]
local owned = p .. ':owned:' .. me
for _, id in ipairs(redis.call('SMEMBERS', owned)) do
  local key = p .. ':task:' .. id
  if redis.call('HGET', key, 'owner') == me and redis.call('ZSCORE', live, id) then
    redis.call('ZADD', live, lease, id)
    redis.call('HSET', key, 'lease_until', lease)
  else
    redis.call('SREM', owned, id)
  end
end
-- An owner with no live task leaves the owners set (its next live row adds it back).
if redis.call('SCARD', owned) == 0 then
  redis.call('SREM', p .. ':owners', me)
end
"""
# Oldest settled rows beyond `capacity` (once over the slack), then those older than the
# retention cutoff, each bounded per call; returns how many rows remain. A row that held an
# idempotency key leaves its settle time with the key, which then expires `key_ttl` after
# it (ARGV[6]): a key outlives its task's row (see `redis_keys.CLAIM_KEY`).
PRUNE = """
local p, live, settled, ttl = ARGV[1], KEYS[1], KEYS[2], tonumber(ARGV[6])
local function drop(ids)
  for _, id in ipairs(ids) do
    local key = p .. ':task:' .. id
    local f = redis.call('HMGET', key, 'task_key', 'settled_at')
    if f[1] then
      local held = p .. ':key:' .. f[1]
      if redis.call('HGET', held, 'task_id') == id then
        local at = tonumber(f[2] or '') or 0
        redis.call('HSET', held, 'settled_at', f[2] or '0')
        redis.call('PEXPIREAT', held, string.format('%.0f', (at + ttl) * 1000))
      end
    end
    redis.call('DEL', key)
    redis.call('ZREM', settled, id)
  end
end
local excess, most = redis.call('ZCARD', settled) - tonumber(ARGV[2]), tonumber(ARGV[5])
if excess > tonumber(ARGV[3]) then
  drop(redis.call('ZRANGE', settled, 0, math.min(excess, most) - 1))
end
drop(redis.call('ZRANGEBYSCORE', settled, '-inf', '(' .. ARGV[4], 'LIMIT', 0, most))
return redis.call('ZCARD', live) + redis.call('ZCARD', settled)
"""
# ARGV: prefix, id, now. Asks the owner of live task `id` to cancel it: 1, or 0 when no
# live task has that id (unknown, settled, handed off).
CANCEL = """
local key = ARGV[1] .. ':task:' .. ARGV[2]
local f = redis.call('HMGET', key, 'owner', 'state', 'handed_off')
if not f[1] or (f[2] ~= 'pending' and f[2] ~= 'running' and f[2] ~= 'scheduled')
    or f[3] == '1' then
  return 0
end
redis.call('HSET', key, 'cancel_requested', ARGV[3])
redis.call('SADD', ARGV[1] .. ':cancels:' .. f[1], ARGV[2])
return 1
"""
SCRIPTS = {
    "upsert": UPSERT,
    "renew": RENEW,
    "prune": PRUNE,
    "cancel": CANCEL,
}
