-- Save steps an SDK ran in the middle of one request (JS v4 checkpointing), without
-- touching the queue: the request's own answer still decides what comes next.
-- The request must still hold its call's lease: after a lease was lost (its worker's Redis
-- went away, the lease expired and another call of the run began), a request that kept
-- checkpointing would run the same steps as the new call. The SDK names its call by the
-- queue item id and the generation the executor sent it with the call (the lease token:
-- it only ever guards this item's lease, and only the executor's scripts act on it).
-- KEYS: 1 run hash, 2 memos hash, 3 stack list, 4 steps hash, 5 leases hash
-- ARGV: 1 now_ms, 2 queue item id ('' = not checked), 3 generation ('' = not checked),
--       then triples: hashed step id, memo JSON, step record JSON
-- returns: number of memos newly saved (a step checkpointed twice keeps its first value);
--          -1 the run is not running, -2 the call's lease is not held any more (nothing
--          written in either case)
if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then return -1 end
if ARGV[2] ~= '' and ARGV[3] ~= '' then
  if redis.call('HGET', KEYS[5], ARGV[2]) ~= ARGV[3] then return -2 end
end
local saved = 0
for i = 4, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    redis.call('RPUSH', KEYS[3], ARGV[i])
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 2])
    saved = saved + 1
  end
end
-- steps saved here are progress: the call that carries them may end with a DiscoveryRequest
-- without counting toward complete.lua's cap on calls that make no progress
if saved > 0 then redis.call('HSET', KEYS[1], 'idle_calls', 0) end
return saved
