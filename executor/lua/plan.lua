-- Fan a run out into one queue item per planned step (parallel steps, or immediate execution
-- off): a targeted call for a StepPlanned (or an AIGateway), a timer for a Sleep, and for a
-- WaitForEvent or InvokeFunction an item that starts its pause (pause.lua), as if it had
-- been reported alone. Marks the run as no longer executing new steps immediately, and
-- records the planned ids as pending: complete.lua (steps, sleeps) and resume.lua (waits,
-- invokes) schedule the next discovery when the last one finishes, or after each one in race
-- mode. Idempotent per step id: a step already pending gets no second item. Every item keeps
-- the run's concurrency slots in `ck`; only calls take them (lease.lua).
-- KEYS: 1 items hash, 2 ready zset, 3 leased zset, 4 leases hash, 5 wake list,
--       6 run hash, 7 pending set, 8.. the keys of the call's concurrency slots (lib_slots.lua)
-- ARGV: 1 item id, 2 lease token, 3 now_ms, 4 item template JSON (without id/step_id),
--       5 race mode ('1' or ''), 6 ms the call took ('' = unknown: added to the run's
--       execution time), 7 the names of the call's slots (JSON list, '' = none), then quads: hashed step id, kind ('call' | 'sleep' | 'pause'),
--       due ms, the payload's text (a sleep's step name; for a pause, its opcode and start
--       as JSON, kept as text: cjson would rewrite user numbers)
-- returns: number of items enqueued; -1 lease lost (nothing written); -3 the run has ended
--#include release
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then return -1 end
release_slots(named_slots(8, ARGV[7]), KEYS[2], KEYS[5], ARGV[1], redis.call('HGET', KEYS[1], ARGV[1]))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[6], 'status') ~= 'Running' then return -3 end
redis.call('HSET', KEYS[6], 'disable_immediate', '1', 'race', ARGV[5])
if (tonumber(ARGV[6]) or 0) > 0 then redis.call('HINCRBY', KEYS[6], 'exec_ms', ARGV[6]) end
local n = 0
for i = 8, #ARGV, 4 do
  if redis.call('SADD', KEYS[7], ARGV[i]) == 1 then
    local item = cjson.decode(ARGV[4])
    local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
    item['id'] = item['run_id'] .. ':' .. seq
    item['step_id'] = ARGV[i]
    item['kind'] = ARGV[i + 1]
    if ARGV[i + 1] == 'sleep' then
      item['payload'] = {name = ARGV[i + 3]}
    elseif ARGV[i + 1] == 'pause' then
      item['payload'] = {spec = ARGV[i + 3]}
    end
    redis.call('HSET', KEYS[1], item['id'], cjson.encode(item))
    redis.call('ZADD', KEYS[2], ARGV[i + 2], item['id'])
    redis.call('LPUSH', KEYS[5], '1')
    n = n + 1
  end
end
redis.call('LTRIM', KEYS[5], 0, 255)
return n
