-- Note that a step body is alive: its call (the queue item leased for it) sent a heartbeat.
-- The worker holding the call renews the call's lease only while beats arrive in time (for
-- a step that declared a heartbeat timeout), so a body that stops beating is ended and
-- retried. Beats of a call that is no longer in flight are refused, so a body that outlived
-- its call learns it (and its beats cannot revive anything).
-- KEYS: 1 leases hash, 2 the call's beat key (a string with a TTL)
-- ARGV: 1 item id, 2 now_ms, 3 TTL of the beat (ms)
-- returns: 1 noted; 0 the call is not in flight (nothing written)
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
