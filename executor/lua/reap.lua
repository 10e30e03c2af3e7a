-- Put items whose lease expired (their worker died or hung) back in the ready queue.
-- Idempotent: several reapers may run at once; each item moves once.
-- KEYS: 1 leased zset, 2 leases hash, 3 ready zset, 4 wake list, 5 items hash
-- ARGV: 1 now_ms, 2 limit
-- returns: number of items put back
--#include release
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(expired) do
  release_slots(KEYS[3], KEYS[4], id, redis.call('HGET', KEYS[5], id))
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZADD', KEYS[3], ARGV[1], id)
  redis.call('LPUSH', KEYS[4], '1')
end
if #expired > 0 then redis.call('LTRIM', KEYS[4], 0, 255) end
return #expired
