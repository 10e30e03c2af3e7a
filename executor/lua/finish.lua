-- End a run (Completed / Failed / Cancelled) and drop its queue item.
-- A run's final status is written once: a second finish keeps the first.
-- KEYS: 1 items hash, 2 leased zset, 3 leases hash, 4 run hash, 5 steps hash
-- ARGV: 1 item id, 2 lease token ('' = not leased, e.g. cancellation), 3 now_ms,
--       4 status ('' = only drop the item), 5 output JSON, 6 step record JSON ('' = none)
-- returns: 1 finished; 2 item dropped, run already ended; 0 lease lost (nothing written)
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
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
return 1
