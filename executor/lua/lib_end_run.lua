-- Shared (--#include end_run): what ending a run (finished or cancelled) does besides its
-- status: remove its pauses and cancel listeners (entries "<pause hash key>|<pause id>"),
-- free its singleton key, take it out of the running index, and queue its end events in
-- the outbox.
local function end_run(run_key, listeners_key, outbox_key, running_key, now)
  for _, entry in ipairs(redis.call('SMEMBERS', listeners_key)) do
    -- split at the last '|': the key holds an event name, which may contain one
    local key, id = string.match(entry, '^(.*)|([^|]*)$')
    redis.call('HDEL', key, id)
  end
  redis.call('DEL', listeners_key)
  local run_id = redis.call('HGET', run_key, 'run_id')
  local single = redis.call('HGET', run_key, 'singleton_key')
  if single and redis.call('GET', single) == run_id then redis.call('DEL', single) end
  redis.call('ZREM', running_key, run_id)
  redis.call('ZADD', outbox_key, now, run_id)
end
