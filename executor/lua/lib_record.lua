-- Shared (--#include record): write a step's record for the steps API, keeping the first
-- attempt's start time across retries and resumptions of that step.
local function save_record(steps_key, json)
  if json == '' then return end
  local rec = cjson.decode(json)
  local old = redis.call('HGET', steps_key, rec['id'])
  if old then
    local prev = cjson.decode(old)
    if prev['started_at'] then rec['started_at'] = prev['started_at'] end
  end
  redis.call('HSET', steps_key, rec['id'], cjson.encode(rec))
end
