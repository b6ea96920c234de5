"""The Lua scripts of `RedisStore`: each runs atomically inside Redis (layout version 1:
a hash per task, the `live` and `settled` sorted sets, an `owned` and a `cancels` set
per owner, and an `owners` set of the owners that lease live tasks)."""

from __future__ import annotations

from .ticks import CLAIM_TICK

# Bound to the lease holder (SQLite's `WHERE owner = ?`): a row another process
# reclaimed, or one already settled, is never changed by a process that stalled past its
# lease; a new row is written. A cancel request (not a row field) is kept while the row
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
  local f = redis.call('HMGET', key, 'owner', 'cancel_requested')
  if f[1] == me or redis.call('EXISTS', key) == 0 then
    local set = {}
    for j, name in ipairs(names) do
      local value = row[j + 3]
      if value ~= null then
        set[#set + 1] = name
        -- a number is the position of the row's saved call among the arguments
        set[#set + 1] = type(value) == 'number' and ARGV[4 + value] or value
      end
    end
    redis.call('DEL', key)
    redis.call('HSET', key, unpack(set))
    if lease ~= '' then
      leasing = true
      redis.call('ZADD', live, lease, id)
      redis.call('ZREM', settled, id)
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
# it (ARGV[6]): a key outlives its task's row (see `CLAIM_KEY`).
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
RECENT_FIELDS = (
    "name state lane created_at started_at finished_at attempts error result progress "
    "progress_message ran_by handed_off"
).split()
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
# Idempotency keys (`options(key=...)`): `{prefix}:key:{key}` is a hash of the task holding
# the key (`task_id`, `name`, `lane`), when it was claimed (`claimed_at`) and, once its
# task's row was pruned, when that task settled (`settled_at`, and an expiry). The rule of
# `stores.keys.held`: held while the task's row is live, until `key_ttl` after it settled,
# or, with no row yet, for the grace after the claim. A key not held is taken over here.
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
SCRIPTS = {
    "upsert": UPSERT,
    "renew": RENEW,
    "prune": PRUNE,
    "cancel": CANCEL,
    "reclaim": RECLAIM,
    "publish": PUBLISH,
    "processes": PROCESSES,
    "recent": RECENT,
    "tick": CLAIM_TICK,
    "claim_key": CLAIM_KEY,
    "release_key": RELEASE_KEY,
}
