-- Extend a lease while its call is in flight, and with it the concurrency slots the call
-- holds. A renewal can come late (a stalled event loop, a slow Redis): by then lease.lua may
-- have trimmed this call's slot entry as expired. The renewal re-asserts the entry when the
-- slot still has room; when another call took the room, this lease is forfeited (the item
-- goes back to ready, so its step runs again once a slot frees, and this call's outcome is
-- refused as "lease lost"): a slot never counts fewer holders than are running.
-- KEYS: 1 leased zset, 2 leases hash, 3 items hash, 4 ready zset, 5 wake list,
--       6.. the keys of the call's slots (lib_slots.lua)
-- ARGV: 1 item id, 2 lease token, 3 new expiry ms, 4 now ms, 5 the slots' names (JSON list)
-- returns: 1 renewed; 0 the lease is no longer ours (expired and reaped, finished, or
--          forfeited just now because its concurrency slot was taken)
--#include slots
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local raw = redis.call('HGET', KEYS[3], ARGV[1])
local slots = {}
if raw then
  local item = cjson.decode(raw)
  if (item['kind'] or 'call') == 'call' then
    slots = slots_of(named_slots(6, ARGV[5]), item['ck'])
    if not slots then return error('renew: the keys of a slot of ' .. ARGV[1] .. ' were not passed') end
  end
end
local held = {}
for i, slot in ipairs(slots) do
  held[i] = redis.call('ZSCORE', slot.key, ARGV[1]) ~= false
  if not held[i] then
    redis.call('ZREMRANGEBYSCORE', slot.key, '-inf', ARGV[4])  -- expired holders
    if redis.call('ZCARD', slot.key) >= slot.limit then
      for j, other in ipairs(slots) do
        if j < i and held[j] then redis.call('ZREM', other.key, ARGV[1]) end
      end
      for j = i + 1, #slots do redis.call('ZREM', slots[j].key, ARGV[1]) end
      redis.call('HDEL', KEYS[2], ARGV[1])
      redis.call('ZREM', KEYS[1], ARGV[1])
      redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
      redis.call('LPUSH', KEYS[5], '1')
      redis.call('LTRIM', KEYS[5], 0, 255)
      return 0
    end
  end
end
for _, slot in ipairs(slots) do redis.call('ZADD', slot.key, ARGV[3], ARGV[1]) end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 1
