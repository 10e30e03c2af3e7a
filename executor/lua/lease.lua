-- Lease up to `limit` due queue items to one worker, respecting concurrency limits: an item
-- whose slot (per function or key) is full moves to that slot's waiting zset, so it never
-- blocks the head of the shared ready queue; release_slots brings it back.
-- A call that takes concurrency slots needs their keys and its run's hash (its waiting
-- reason is set or cleared): the caller names them (KEYS from 6). A due call whose keys
-- were not named stays in ready and is returned as needing them; the caller leases again
-- naming them (queue.py: one round trip when nothing due takes a slot, two when some does).
-- A call's queue wait (from when it was due to now) is handed to the worker in the item as
-- `queued_ms`; the worker adds it to its run (call_start.lua).
-- KEYS: 1 ready zset, 2 leased zset, 3 leases hash, 4 items hash,
--       5 set of the names of the slots whose waiting zset ever held an item,
--       6.. the named slots' keys (holders zset, waiting zset per name; lib_slots.lua),
--       then the named runs' hashes
-- ARGV: 1 now_ms, 2 lease expiry ms, 3 lease token, 4 limit,
--       5 the slots' names (JSON list, '' = none), 6 the runs' ids (JSON list, '' = none)
-- returns: {next_due_ms_or_-1, leased count, leased item JSON..., item JSON needing keys...};
--          next_due is the earliest score left in ready (so an idle worker knows how long
--          it may block), -1 when ready is empty.
--#include slots
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
local slots, nslots = named_slots(6, ARGV[5])
local runs = {}
if ARGV[6] ~= '' then
  for i, run_id in ipairs(cjson.decode(ARGV[6])) do runs[run_id] = KEYS[5 + 2 * nslots + i] end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit * 4)
local leased, needing = {}, {}
for i = 1, #due, 2 do
  if #leased >= limit then break end
  local id = due[i]
  local raw = redis.call('HGET', KEYS[4], id)
  if not raw then
    redis.call('ZREM', KEYS[1], id)
  else
    local item = cjson.decode(raw)
    local ck = item['ck']
    -- only a call to the app takes a concurrency slot; timers and pause starts carry the
    -- run's slots in `ck` for the call that follows them
    if (item['kind'] or 'call') ~= 'call' or type(ck) ~= 'table' or #ck == 0 then ck = nil end
    local held = ck and slots_of(slots, ck)
    local run_key = ck and runs[item['run_id']]
    if ck and not (held and run_key) then
      table.insert(needing, raw)
    else
      redis.call('ZREM', KEYS[1], id)
      local blocked = nil
      for _, slot in ipairs(held or {}) do
        redis.call('ZREMRANGEBYSCORE', slot.key, '-inf', now)  -- leases that expired
        if not blocked and redis.call('ZCARD', slot.key) >= slot.limit then blocked = slot end
      end
      if blocked then
        redis.call('ZADD', blocked.wait, due[i + 1], id)
        redis.call('SADD', KEYS[5], blocked.name)
        redis.call('HSET', run_key, 'waiting_reason', blocked.label)
      else
        for _, slot in ipairs(held or {}) do redis.call('ZADD', slot.key, ARGV[2], id) end
        if run_key then redis.call('HDEL', run_key, 'waiting_reason') end
        redis.call('ZADD', KEYS[2], ARGV[2], id)
        redis.call('HSET', KEYS[3], id, ARGV[3])
        local waited = math.max(0, now - tonumber(due[i + 1]))
        if (item['kind'] or 'call') == 'call' and waited > 0 then
          raw = string.sub(raw, 1, -2) .. ',"queued_ms":' .. string.format('%d', waited) .. '}'
        end
        table.insert(leased, raw)
      end
    end
  end
end
local out = {-1, #leased}
for _, raw in ipairs(leased) do table.insert(out, raw) end
for _, raw in ipairs(needing) do table.insert(out, raw) end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head[2] then out[1] = tonumber(head[2]) end
return out
