-- Save steps an SDK ran in the middle of one request (JS v4 checkpointing), without
-- touching the queue: the request's own answer still decides what comes next.
-- KEYS: 1 run hash, 2 memos hash, 3 stack list, 4 steps hash
-- ARGV: 1 now_ms, then triples: hashed step id, memo JSON, step record JSON
-- returns: number of memos newly saved (a step checkpointed twice keeps its first value);
--          -1 the run is not running (nothing written)
if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then return -1 end
local saved = 0
for i = 2, #ARGV, 3 do
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
