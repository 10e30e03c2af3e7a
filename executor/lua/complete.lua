-- Save a step's memo, append it to the run's step order, schedule the run's next call and
-- release the lease: one atomic script, guarded by the lease token, so a memo is saved once.
-- A targeted call (a planned or parallel step) only schedules the run's next discovery call
-- when it is the last of its group to finish (the pending set is empty).
-- KEYS: 1 items hash, 2 ready zset, 3 leased zset, 4 leases hash, 5 wake list,
--       6 run hash, 7 memos hash, 8 stack list, 9 steps hash, 10 pending set,
--       11 listeners set (unused here; the run's keys are passed as one block),
--       12.. the keys of the call's concurrency slots (lib_slots.lua)
-- ARGV: 1 item id, 2 lease token, 3 now_ms,
--       4 hashed step id ('' = no memo to save), 5 memo JSON, 6 step record JSON ('' = none),
--       7 next call due ms (-1 = no next call), 8 next item JSON without id,
--       9 lease expiry ms for handing the next item straight back to the caller (0 = enqueue),
--       10 hashed id of the planned step this call ran ('' = a discovery call),
--       11 how many calls in a row may make no progress (0 = no limit),
--       12 ms the call took ('' = not a call: added to the run's execution time),
--       13 the names of the call's slots (JSON list, '' = none; the next call takes the same)
-- returns: {0} lease lost (nothing written); {3} the run has ended (cancelled): the item is
--          dropped, nothing else written; {1} done; {2} done but the memo existed
--          already (first value kept); {1|2, next_item_json} next item leased to the caller
--          under the same token; {4} the run made no progress in more than ARGV[11] calls
--          in a row (a discovery that found nothing, or a step whose memo exists): nothing
--          written, the caller fails the run.
-- Idempotent: a retry of this script whose first reply was lost (redis-py re-sends on a
-- connection error) finds the item gone but the run's `handoff` field naming it, and
-- answers with the same leased next item instead of "lease lost".
--#include release
--#include record
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[2] then
  local handoff = redis.call('HGET', KEYS[6], 'handoff')
  local prefix = ARGV[1] .. '|' .. ARGV[2] .. '|'
  if handoff and string.sub(handoff, 1, #prefix) == prefix then
    local next_id = string.sub(handoff, #prefix + 1)
    if redis.call('HGET', KEYS[4], next_id) == ARGV[2] then
      return {1, redis.call('HGET', KEYS[1], next_id)}
    end
    return {1}
  end
  return {0}
end
-- a call that made no progress: a discovery that reported nothing new, or a step again
local idle = (ARGV[4] == '' and ARGV[10] == '')
             or (ARGV[4] ~= '' and redis.call('HEXISTS', KEYS[7], ARGV[4]) == 1)
if idle then
  local limit = tonumber(ARGV[11])
  if limit > 0 and (tonumber(redis.call('HGET', KEYS[6], 'idle_calls')) or 0) >= limit then
    return {4}
  end
end
local current = redis.call('HGET', KEYS[1], ARGV[1])
local slots = named_slots(12, ARGV[13])
-- the next call's slots are the run's, named by the caller with this call's: checked
-- before anything is written, so a caller's mistake fails the script with nothing done
local next_slots = {}
if tonumber(ARGV[7]) >= 0 then
  next_slots = slots_of(slots, cjson.decode(ARGV[8])['ck'])
  if not next_slots then return error('complete: the keys of a next call slot were not passed') end
end
-- may the run keep its concurrency slots for its next call? only if nobody waits for them
local contended = false
if current then
  for _, slot in ipairs(slots_of(slots, cjson.decode(current)['ck']) or {}) do
    if redis.call('ZCARD', slot.wait) > 0 then contended = true end
  end
end
release_slots(slots, KEYS[2], KEYS[5], ARGV[1], current)
if redis.call('HGET', KEYS[6], 'status') ~= 'Running' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  return {3}
end
if (tonumber(ARGV[12]) or 0) > 0 then redis.call('HINCRBY', KEYS[6], 'exec_ms', ARGV[12]) end
if idle then
  redis.call('HINCRBY', KEYS[6], 'idle_calls', 1)
else
  redis.call('HSET', KEYS[6], 'idle_calls', 0)
end
local code = 1
if ARGV[4] ~= '' then
  if not save_memo(KEYS[7], KEYS[8], ARGV[4], ARGV[5]) then code = 2 end
end
save_record(KEYS[9], ARGV[6])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local due = tonumber(ARGV[7])
if ARGV[10] ~= '' then
  redis.call('SREM', KEYS[10], ARGV[10])
  -- race mode resumes the run after each finished step; wait mode after the last
  if redis.call('SCARD', KEYS[10]) > 0 and redis.call('HGET', KEYS[6], 'race') ~= '1' then
    return {code}
  end
  -- the group is done: request version 2 resumes immediate execution
  if redis.call('HGET', KEYS[6], 'version') == '2' then
    redis.call('HSET', KEYS[6], 'disable_immediate', '0')
  end
end
if due < 0 then return {code} end
local item = cjson.decode(ARGV[8])
local seq = redis.call('HINCRBY', KEYS[6], 'seq', 1)
item['id'] = item['run_id'] .. ':' .. seq
local encoded = cjson.encode(item)
redis.call('HSET', KEYS[1], item['id'], encoded)
-- a run whose concurrency key has others waiting goes back through the queue, so they get
-- their turn; otherwise its next call comes straight back, holding the slot it just freed
if tonumber(ARGV[9]) > 0 and due <= tonumber(ARGV[3]) and not contended then
  for _, slot in ipairs(next_slots) do redis.call('ZADD', slot.key, ARGV[9], item['id']) end
  redis.call('ZADD', KEYS[3], ARGV[9], item['id'])
  redis.call('HSET', KEYS[4], item['id'], ARGV[2])
  redis.call('HSET', KEYS[6], 'handoff', ARGV[1] .. '|' .. ARGV[2] .. '|' .. item['id'])
  return {code, encoded}
end
redis.call('ZADD', KEYS[2], due, item['id'])
redis.call('LPUSH', KEYS[5], '1')
redis.call('LTRIM', KEYS[5], 0, 255)
return {code}
