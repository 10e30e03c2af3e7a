-- Put items whose lease expired (their worker died or hung) back in the ready queue.
-- Idempotent: several reapers may run at once; each item moves once. A call holding
-- concurrency slots frees them, which needs their keys: one the caller did not name stays
-- leased and is returned; the caller reaps again naming them (queue.py).
-- KEYS: 1 leased zset, 2 leases hash, 3 ready zset, 4 wake list, 5 items hash,
--       6.. the named slots' keys (lib_slots.lua)
-- ARGV: 1 now_ms, 2 limit, 3 the slots' names (JSON list, '' = none)
-- returns: {number of items put back, item JSON needing slot keys...}
--#include release
local slots = named_slots(6, ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {0}
for _, id in ipairs(expired) do
  local raw = redis.call('HGET', KEYS[5], id)
  local item = raw and cjson.decode(raw)
  local ck = item and (item['kind'] or 'call') == 'call' and item['ck']
  if type(ck) == 'table' and not slots_of(slots, ck) then
    table.insert(out, raw)
  else
    release_slots(slots, KEYS[3], KEYS[4], id, raw)
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[3], ARGV[1], id)
    redis.call('LPUSH', KEYS[4], '1')
    out[1] = out[1] + 1
  end
end
if out[1] > 0 then redis.call('LTRIM', KEYS[4], 0, 255) end
return out
