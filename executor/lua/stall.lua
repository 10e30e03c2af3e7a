-- Flag a running run as stalled (no progress for longer than its threshold), note that its
-- `inngest/function.stalled` event was sent, or clear the flag when the run moves again.
-- One stall is one flag: flagging a run that is flagged already keeps the first `since`,
-- so the event (whose id derives from `since`) is sent once per stall.
-- KEYS: 1 run hash, 2 stalled-runs zset (run id -> since ms)
-- ARGV: 1 action ('flag' | 'sent' | 'clear'), 2 run id, 3 since ms ('' with clear: any),
--       4 reason (flag)
-- returns: {code, since}: flag: {1, since} newly flagged, or flagged but its event not yet
--          sent: send it; {0, since} flagged and its event sent (nothing written); {2} the
--          run is not running (its stalled entry removed). sent: {1} noted; {2} noted
--          already; {0} the flag is another stall's or gone. clear: {1} cleared; {0} not
--          flagged (or another stall's: nothing written)
local since = redis.call('HGET', KEYS[1], 'stalled_since')
if ARGV[1] == 'flag' then
  if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then
    redis.call('ZREM', KEYS[2], ARGV[2])
    return {2}
  end
  if since then
    if redis.call('HGET', KEYS[1], 'stall_event_sent') == since then return {0, since} end
    return {1, since}
  end
  redis.call('HSET', KEYS[1], 'stalled_since', ARGV[3], 'stalled_reason', ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
  return {1, ARGV[3]}
end
if ARGV[1] == 'sent' then
  if since ~= ARGV[3] then return {0} end
  if redis.call('HGET', KEYS[1], 'stall_event_sent') == since then return {2} end
  redis.call('HSET', KEYS[1], 'stall_event_sent', since)
  return {1}
end
-- clear
if not since then
  redis.call('ZREM', KEYS[2], ARGV[2])
  return {0}
end
if ARGV[3] ~= '' and since ~= ARGV[3] then return {0} end
redis.call('HDEL', KEYS[1], 'stalled_since', 'stalled_reason', 'stall_event_sent')
redis.call('ZREM', KEYS[2], ARGV[2])
return {1}
