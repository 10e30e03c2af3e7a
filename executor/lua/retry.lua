-- Put a failed call back in the queue for a later attempt, and record the step's error.
-- KEYS: 1 items hash, 2 ready zset, 3 leased zset, 4 leases hash, 5 wake list,
--       6 run hash, 7 steps hash, 8.. the keys of the call's concurrency slots (lib_slots.lua)
-- ARGV: 1 item id, 2 lease token, 3 due ms, 4 item JSON (attempt already raised),
--       5 last error text, 6 step record JSON ('' = none), 7 ms the failed call took
--       ('' = unknown: added to the run's execution time), 8 the names of the call's slots
--       (JSON list, '' = none)
-- returns: 1 rescheduled; 0 lease lost (nothing written); 3 the run has ended: item dropped
--#include release
--#include record
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
release_slots(named_slots(8, ARGV[8]), KEYS[2], KEYS[5], ARGV[1], redis.call('HGET', KEYS[1], ARGV[1]))
if redis.call('HGET', KEYS[6], 'status') ~= 'Running' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  return 3
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[6], 'last_error', ARGV[5])
if (tonumber(ARGV[7]) or 0) > 0 then redis.call('HINCRBY', KEYS[6], 'exec_ms', ARGV[7]) end
save_record(KEYS[7], ARGV[6])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, 255)
return 1
