-- End a run (Completed / Failed / Cancelled) and drop its queue item.
-- A run's final status is written once: a second finish keeps the first. Ending a run
-- removes its pauses and cancel listeners, and queues the run for its end events (outbox).
-- KEYS: 1 items hash, 2 leased zset, 3 leases hash, 4 run hash, 5 steps hash,
--       6 listeners set, 7 outbox zset, 8 ready zset, 9 wake list, 10 running-runs zset,
--       11.. (optional) the dashboard's indexes and counters (see lib_end_run.lua)
-- ARGV: 1 item id ('' = no item), 2 lease token ('' = not leased, e.g. cancellation),
--       3 now_ms, 4 status ('' = only drop the item), 5 output JSON,
--       6 step record JSON ('' = none), 7 the error the end events carry ('' = the output),
--       8 ms the call that ended the run took ('' = none), 9.. the indexes' arguments
--       (see lib_end_run.lua)
-- returns: 1 finished; 2 item dropped, run already ended (or status ''); 0 lease lost
--          (nothing written)
--#include release
--#include record
--#include end_run
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
save_record(KEYS[5], ARGV[6])
if ARGV[4] == '' then return 2 end
if redis.call('HGET', KEYS[4], 'status') ~= 'Running' then return 2 end
if (tonumber(ARGV[8]) or 0) > 0 then redis.call('HINCRBY', KEYS[4], 'exec_ms', ARGV[8]) end
redis.call('HSET', KEYS[4], 'status', ARGV[4], 'output', ARGV[5], 'ended_at', ARGV[3])
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[4], 'error', ARGV[7]) end
end_run(KEYS[4], KEYS[6], KEYS[7], KEYS[10], ARGV[3], 11, 9)
return 1
