-- End a run (Completed / Failed / Cancelled) and drop its queue item.
-- A run's final status is written once: a second finish keeps the first. Ending a run
-- removes its pauses and cancel listeners, and queues the run for its end events (outbox).
-- KEYS: 1 items hash, 2 leased zset, 3 leases hash, 4 run hash, 5 steps hash,
--       6 listeners set, 7 outbox zset, 8 ready zset, 9 wake list
-- ARGV: 1 item id ('' = no item), 2 lease token ('' = not leased, e.g. cancellation),
--       3 now_ms, 4 status ('' = only drop the item), 5 output JSON,
--       6 step record JSON ('' = none)
-- returns: 1 finished; 2 item dropped, run already ended (or status ''); 0 lease lost
--          (nothing written)
-- Listener entries are "<pause hash key>|<pause id>", keys built by executor/keys.py.
--#include release
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[1] ~= '' then
  if redis.call('HGET', KEYS[3], ARGV[1]) then
    release_slots(KEYS[8], KEYS[9], ARGV[1], redis.call('HGET', KEYS[1], ARGV[1]))
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[8], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if ARGV[6] ~= '' then
  local rec = cjson.decode(ARGV[6])
  local old = redis.call('HGET', KEYS[5], rec['id'])
  if old then
    local prev = cjson.decode(old)
    if prev['started_at'] then rec['started_at'] = prev['started_at'] end
  end
  redis.call('HSET', KEYS[5], rec['id'], cjson.encode(rec))
end
if ARGV[4] == '' then return 2 end
if redis.call('HGET', KEYS[4], 'status') ~= 'Running' then return 2 end
redis.call('HSET', KEYS[4], 'status', ARGV[4], 'output', ARGV[5], 'ended_at', ARGV[3])
local single = redis.call('HGET', KEYS[4], 'singleton_key')
if single and redis.call('GET', single) == redis.call('HGET', KEYS[4], 'run_id') then
  redis.call('DEL', single)
end
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[6])) do
  local sep = string.find(entry, '|', 1, true)
  redis.call('HDEL', string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1))
end
redis.call('DEL', KEYS[6])
redis.call('ZADD', KEYS[7], ARGV[3], redis.call('HGET', KEYS[4], 'run_id'))
return 1
