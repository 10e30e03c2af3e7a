-- Cancel a run: status Cancelled with a reason, pauses and listeners removed, end events
-- queued. Its queue items are left to be dropped when leased (they see a run that ended),
-- and a call in flight cannot schedule another: every script checks the run's status.
-- KEYS: 1 run hash, 2 listeners set, 3 outbox zset
-- ARGV: 1 now_ms, 2 output JSON (the reason)
-- returns: 1 cancelled; 0 the run was not running (already ended, or unknown)
--#include end_run
if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'Cancelled', 'output', ARGV[2], 'ended_at', ARGV[1])
end_run(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
