-- Shared (--#include end_run): what ending a run (finished or cancelled) does besides its
-- status: free its singleton (the run hash's `singleton` field names its field of the
-- shard's `singletons_key` hash; freed only while it still names this run), take it out of
-- the running index, and queue its end events in the outbox (`outbox_key` nil: none to
-- emit). (A run started before the singletons hash names a string key in `singleton_key`
-- instead: that key is not freed here, a name read from data is no key a script may
-- touch; nothing reads it any more.) Its pauses and cancel listeners (the members of its
-- listeners set) are left: their hashes are not in KEYS, so the outbox's processing
-- removes them after the end (lifecycle.py, unlisten.lua), and a caller queues a run with
-- listeners in the outbox whatever its end events. Until then they are harmless:
-- resume.lua consumes a pause of an ended run and schedules nothing (2), cancel.lua
-- cancels only a Running run, an invoke's event is sent only for a Running caller
-- (waits.py). With `k` and `a` (positions in the caller's KEYS and ARGV, laid out by
-- executor/indexes.py `end_plan`), also the dashboard's indexes and counters:
--   KEYS[k], KEYS[k+1]: the function's minute and hour stats hashes; KEYS[k+2]: the
--   status index;
--   KEYS[k+3]: the function's Running index; KEYS[k+4]: the function x status index;
--   KEYS[k+5..]: the search entries of the run's output (or error);
--   ARGV[a], ARGV[a+1]: the stats hashes' expiry (unix ms); then per search entry its
--   score ('' = the run's start) and member ('' = the run id).
-- The run's execution and queue times (`exec_ms`, `queue_ms`, summed over its calls by the
-- scripts that record calls and by call_start.lua) are counted in duration buckets.
--#include stats
local function end_run(run_key, outbox_key, running_key, singletons_key, now, k, a)
  local run_id = redis.call('HGET', run_key, 'run_id')
  local single = redis.call('HGET', run_key, 'singleton')
  if single and redis.call('HGET', singletons_key, single) == run_id then
    redis.call('HDEL', singletons_key, single)
  end
  redis.call('ZREM', running_key, run_id)
  if outbox_key then redis.call('ZADD', outbox_key, now, run_id) end
  if not k or not KEYS[k + 4] or not run_id then return end
  local f = redis.call('HMGET', run_key, 'function_id', 'status', 'started_at', 'queue_ms',
                       'exec_ms')
  local started = tonumber(f[3]) or tonumber(now)
  redis.call('ZREM', KEYS[k + 3], run_id)
  redis.call('ZADD', KEYS[k + 2], started, run_id)
  redis.call('ZADD', KEYS[k + 4], started, run_id)
  if f[1] then
    count_stats({KEYS[k], KEYS[k + 1]}, {ARGV[a], ARGV[a + 1]},
                {f[2], 'e' .. stat_bucket(f[5]), 'q' .. stat_bucket(f[4])})
  end
  local n = a + 2
  for i = k + 5, #KEYS do
    local score, member = ARGV[n], ARGV[n + 1]
    if score == '' then score = started end
    if member == '' then member = run_id end
    redis.call('ZADD', KEYS[i], score, member)
    n = n + 2
  end
end
