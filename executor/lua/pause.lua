-- A run starts waiting (for an event, or for an invoked function to finish): store the
-- pause, index it for the run's cleanup, schedule its timeout, and release the lease.
-- KEYS: 1 items hash, 2 ready zset, 3 leased zset, 4 leases hash, 5 wake list,
--       6 run hash, 7 steps hash, 8 pause hash (by event name, or by correlation id),
--       9 listeners set, 10 (optional) the path set of the pause's event name, when the
--       pause hash is an index bucket (executor/pause_index.py), then (from 10, or 11 with
--       the path set) the keys of the call's concurrency slots (lib_slots.lua)
-- ARGV: 1 item id, 2 lease token, 3 now_ms, 4 pause id, 5 pause JSON,
--       6 timeout item id, 7 timeout item JSON, 8 timeout due ms, 9 step record JSON,
--       10 follow-up item id ('' = none), 11 its JSON: work due now that must survive a
--       crash, such as sending an invoke's event (stored here, with the pause, atomically),
--       12 ms the call took ('' = unknown: added to the run's execution time),
--       13 the bucket's path (with KEYS[10]): added to the path set with the pause, so an
--       event never finds a pause whose bucket it does not know to read ('' = no path set),
--       14 the pause's member in the listeners set (its id and address, no key name:
--       pause_index.PauseRef), 15 the names of the call's slots (JSON list, '' = none)
-- returns: 1 waiting; 0 lease lost (nothing written); 3 the run has ended: item dropped
--#include release
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return 0 end
release_slots(named_slots(ARGV[13] ~= '' and 11 or 10, ARGV[15]), KEYS[2], KEYS[5], ARGV[1],
              redis.call('HGET', KEYS[1], ARGV[1]))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[6], 'status') ~= 'Running' then return 3 end
if (tonumber(ARGV[12]) or 0) > 0 then redis.call('HINCRBY', KEYS[6], 'exec_ms', ARGV[12]) end
redis.call('HSET', KEYS[8], ARGV[4], ARGV[5])
if ARGV[13] ~= '' then redis.call('SADD', KEYS[10], ARGV[13]) end
redis.call('SADD', KEYS[9], ARGV[14])
redis.call('HSET', KEYS[1], ARGV[6], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[6])
redis.call('HSET', KEYS[7], cjson.decode(ARGV[9])['id'], ARGV[9])
if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[1], ARGV[10], ARGV[11])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[10])
  redis.call('LPUSH', KEYS[5], '1')
end
return 1
