-- Shared (--#include end_run): what ending a run (finished or cancelled) does besides its
-- status: remove its pauses and cancel listeners (entries "<pause hash key>|<pause id>"),
-- free its singleton key, and queue its end events in the outbox.
local function end_run(run_key, listeners_key, outbox_key, now)
  for _, entry in ipairs(redis.call('SMEMBERS', listeners_key)) do
    local sep = string.find(entry, '|', 1, true)
    redis.call('HDEL', string.sub(entry, 1, sep - 1), string.sub(entry, sep + 1))
  end
  redis.call('DEL', listeners_key)
  local run_id = redis.call('HGET', run_key, 'run_id')
  local single = redis.call('HGET', run_key, 'singleton_key')
  if single and redis.call('GET', single) == run_id then redis.call('DEL', single) end
  redis.call('ZADD', outbox_key, now, run_id)
end
