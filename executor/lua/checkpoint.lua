-- Save steps an SDK ran in the middle of one request (JS v4 checkpointing), without
-- touching the queue: the request's own answer still decides what comes next.
-- The request must still hold its call's lease: after a lease was lost (its worker's Redis
-- went away, the lease expired and another call of the run began), a request that kept
-- checkpointing would run the same steps as the new call. The SDK names its call by the
-- queue item id and the generation the executor sent it with the call (the lease token:
-- it only ever guards this item's lease, and only the executor's scripts act on it).
-- A checkpoint of a named call is also that call's heartbeat (its body is alive), and the
-- route needs the run's function and trace context for its metrics and spans: all of it
-- here, so that a checkpointed step costs the executor one round trip to Redis.
-- KEYS: 1 run hash, 2 memos hash, 3 stack list, 4 steps hash, 5 leases hash,
--       6 the call's beat key (a string with a TTL; only read and written when the
--       call is named and holds its lease)
-- ARGV: 1 now_ms, 2 queue item id ('' = not checked), 3 generation ('' = not checked),
--       4 TTL of the beat (ms), then triples: hashed step id, memo JSON, step record JSON
-- returns: {saved, previous beat of the call (ms, '' for none or no named call),
--           the run's function_id, the run's trace field ('' for none)}
--          saved: number of memos newly saved (a step checkpointed twice keeps its first
--          value); -1 the run is not running, -2 the call's lease is not held any more
--          (nothing written in either case)
--#include record
local run = redis.call('HMGET', KEYS[1], 'status', 'function_id', 'trace')
if run[1] ~= 'Running' then return {-1, '', '', ''} end
local named = ARGV[2] ~= '' and ARGV[3] ~= ''
if named then
  if redis.call('HGET', KEYS[5], ARGV[2]) ~= ARGV[3] then return {-2, '', '', ''} end
end
local saved = 0
for i = 5, #ARGV, 3 do
  if save_memo(KEYS[2], KEYS[3], ARGV[i], ARGV[i + 1]) then
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
    saved = saved + 1
  end
end
-- steps saved here are progress: the call that carries them may end with a DiscoveryRequest
-- without counting toward complete.lua's cap on calls that make no progress
if saved > 0 then redis.call('HSET', KEYS[1], 'idle_calls', 0) end
local beat = ''
if named then
  beat = redis.call('GET', KEYS[6]) or ''
  redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[4])
end
return {saved, beat, run[2] or '', run[3] or ''}
