-- Resume a paused run exactly once: by a matching event, by the invoked function's end, or
-- by the pause's timeout. Whoever deletes the pause wins; everyone else gets 0. A pause of a
-- parallel group (its step is pending) schedules the run's next discovery only when it is
-- the last of the group to finish, or at once in race mode, like complete.lua.
-- KEYS: 1 items hash, 2 ready zset, 3 leased zset, 4 leases hash, 5 wake list,
--       6 run hash, 7 memos hash, 8 stack list, 9 steps hash, 10 pause hash,
--       11 listeners set, 12 pending set
-- ARGV: 1 pause id, 2 hashed step id, 3 memo JSON, 4 now_ms, 5 timeout item id,
--       6 step record JSON, 7 next (discovery) item JSON without id, 8 the pause's member
--       in the listeners set, 9 the member it has if it was stored before members named
--       pauses by address (`<pause hash key>|<pause id>`): both are removed
-- returns: 1 resumed; 0 the pause was already consumed (or never existed); 2 consumed but
--          the run has ended, so nothing is scheduled
--#include record
if redis.call('HDEL', KEYS[10], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[11], ARGV[8], ARGV[9])
redis.call('HDEL', KEYS[1], ARGV[5])
redis.call('ZREM', KEYS[2], ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[5])
redis.call('HDEL', KEYS[4], ARGV[5])
if redis.call('HGET', KEYS[6], 'status') ~= 'Running' then return 2 end
save_memo(KEYS[7], KEYS[8], ARGV[2], ARGV[3])
save_record(KEYS[9], ARGV[6])
if KEYS[12] and redis.call('SREM', KEYS[12], ARGV[2]) == 1 then
  if redis.call('SCARD', KEYS[12]) > 0 and redis.call('HGET', KEYS[6], 'race') ~= '1' then
    return 1
  end
  -- the group is done: request version 2 resumes immediate execution
  if redis.call('HGET', KEYS[6], 'version') == '2' then
    redis.call('HSET', KEYS[6], 'disable_immediate', '0')
  end
end
local item = cjson.decode(ARGV[7])
local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
item['id'] = item['run_id'] .. ':' .. seq
redis.call('HSET', KEYS[1], item['id'], cjson.encode(item))
redis.call('ZADD', KEYS[2], ARGV[4], item['id'])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, 255)
return 1
