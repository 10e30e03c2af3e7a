-- Cancel a run: status Cancelled with a reason, end events and the removal of its pauses
-- and listeners queued (outbox, see lib_end_run.lua). Its queue items are left to be
-- dropped when leased (they see a run that ended), and a call in flight cannot schedule another: every script checks the run's status.
-- With a condition item (timeouts.start), the run is cancelled only while that item is
-- still queued and not leased: checked and cancelled in one step, so a run that starts in
-- between is never cancelled for not having started.
-- KEYS: 1 run hash, 2 outbox zset, 3 running-runs zset, 4 items hash, 5 leases hash,
--       6 the shard's singletons hash, 7.. (optional) the dashboard's indexes (see
--       lib_end_run.lua)
-- ARGV: 1 now_ms, 2 output JSON (the reason), 3 condition item id ('' = none),
--       4.. the indexes' arguments
-- returns: 1 cancelled; 0 the run was not running (already ended, or unknown);
--          4 the condition item was leased or is gone (the run started): nothing written
--#include end_run
if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then return 0 end
if ARGV[3] ~= '' and (redis.call('HEXISTS', KEYS[4], ARGV[3]) == 0
                      or redis.call('HEXISTS', KEYS[5], ARGV[3]) == 1) then
  return 4
end
redis.call('HSET', KEYS[1], 'status', 'Cancelled', 'output', ARGV[2], 'ended_at', ARGV[1])
end_run(KEYS[1], KEYS[2], KEYS[3], KEYS[6], ARGV[1], 7, 4)
return 1
