-- End a run (Completed / Failed / Cancelled) and drop its queue item.
-- A run's final status is written once: a second finish keeps the first. Ending a run
-- queues it for its end events and the removal of its pauses and cancel listeners
-- (outbox, see lib_end_run.lua).
-- A completed run whose end nobody can be waiting for is not queued for end events: no
-- function listens for `inngest/function.finished` (ARGV[9], as of the registry version
-- ARGV[10], checked against KEYS[13]), it was not invoked (its trigger names no
-- correlation id) and no pause of that name is marked in its shard (KEYS[11], KEYS[12]:
-- a pause of any shard marks every shard's, pauses.mark_waited), and it has no pause or
-- cancel listener left to remove (KEYS[6] empty).
-- KEYS: 1 items hash, 2 leased zset, 3 leases hash, 4 run hash, 5 steps hash,
--       6 listeners set, 7 outbox zset, 8 ready zset, 9 wake list, 10 running-runs zset,
--       11 the shard's unindexed pauses of function.finished, 12 its path set,
--       13 the shard's registry version, 14 the shard's singletons hash, 15 memos hash,
--       16 stack list,
--       17.. the keys of the call's concurrency slots (lib_slots.lua), then the hash of
--       each pause of ARGV[12], then (optional) the dashboard's indexes and counters (see
--       lib_end_run.lua)
-- ARGV: 1 item id ('' = no item), 2 lease token ('' = not leased, e.g. cancellation),
--       3 now_ms, 4 status ('' = only drop the item), 5 output JSON,
--       6 step record JSON ('' = none), 7 the error the end events carry ('' = the output),
--       8 ms the call that ended the run took ('' = none),
--       9 '1' when no function listens for function.finished, 10 the registry version of
--       that, 11 the names of the call's slots (JSON list, '' = none),
--       12 pauses of the run the caller knows of, removed with its end: [[id, member in the
--       listeners set]...] ('' = none; its cancel listeners),
--       13 steps the call ran and saves with the run's end (an SDK's `[StepRun...,
--       RunComplete]` answer): [[hashed id, memo JSON, step record JSON]...] ('' = none;
--       a step saved already keeps its first value, as checkpoint.lua),
--       14.. the indexes' arguments (see lib_end_run.lua)
-- returns: {1} finished; {2} item dropped, run already ended (or status ''); {0} lease
--          lost (nothing written); {4, run_id, function_id, started_at, cost_usd,
--          input_tokens, output_tokens, trace} finished with no end events to emit (what
--          the run's metrics and root span need)
--#include release
--#include record
--#include end_run
if ARGV[2] ~= '' and redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[2] then return {0} end
local slots, named = named_slots(17, ARGV[11])
local tail = 17 + 2 * named
local known = {}
if ARGV[12] ~= '' then known = cjson.decode(ARGV[12]) end
local pauses_at = tail
tail = tail + #known
if ARGV[1] ~= '' then
  if redis.call('HGET', KEYS[3], ARGV[1]) then
    release_slots(slots, KEYS[8], KEYS[9], ARGV[1], redis.call('HGET', KEYS[1], ARGV[1]))
  end
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[8], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
end
save_record(KEYS[5], ARGV[6])
if ARGV[4] == '' then return {2} end
if redis.call('HGET', KEYS[4], 'status') ~= 'Running' then return {2} end
if ARGV[13] ~= '' then
  for _, step in ipairs(cjson.decode(ARGV[13])) do
    if save_memo(KEYS[15], KEYS[16], step[1], step[2]) then
      redis.call('HSET', KEYS[5], step[1], step[3])
    end
  end
end
if (tonumber(ARGV[8]) or 0) > 0 then redis.call('HINCRBY', KEYS[4], 'exec_ms', ARGV[8]) end
redis.call('HSET', KEYS[4], 'status', ARGV[4], 'output', ARGV[5], 'ended_at', ARGV[3])
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[4], 'error', ARGV[7]) end
-- the pauses named here go with the run's end; any other one is removed after it, through
-- the outbox (lib_end_run.lua)
for i, pause in ipairs(known) do
  redis.call('HDEL', KEYS[pauses_at + i - 1], pause[1])
  redis.call('SREM', KEYS[6], pause[2])
end
local quiet = ARGV[4] == 'Completed' and ARGV[9] == '1'
  and (redis.call('GET', KEYS[13]) or '0') == ARGV[10]
  and redis.call('EXISTS', KEYS[11], KEYS[12]) == 0
  and redis.call('EXISTS', KEYS[6]) == 0
  and not string.find(redis.call('HGET', KEYS[4], 'event') or '', '"correlation_id"', 1, true)
end_run(KEYS[4], (not quiet) and KEYS[7] or nil, KEYS[10], KEYS[14], ARGV[3], tail, 14)
if quiet then
  local out = redis.call('HMGET', KEYS[4], 'run_id', 'function_id', 'started_at', 'cost_usd',
                         'input_tokens', 'output_tokens', 'trace')
  table.insert(out, 1, 4)
  return out
end
return {1}
