-- Shared (--#include record): save a step's memo once (save_memo, at the end), and write a
-- step's record for the steps API (save_record), keeping the first
-- attempt's start time across retries and resumptions of that step (and what a wait was
-- for), and every attempt: a
-- record may carry `try` (one call's attempt: n, start, end, queued_ms, status, error),
-- which is appended to the step's `tries` (at most 50 kept).
local function save_record(steps_key, json)
  if json == '' then return end
  local rec = cjson.decode(json)
  local old = redis.call('HGET', steps_key, rec['id'])
  local tries = nil
  if old then
    local prev = cjson.decode(old)
    if prev['started_at'] then rec['started_at'] = prev['started_at'] end
    -- what a wait or invoke was for stays known once it ends (resumed, timed out)
    for _, field in ipairs({'waiting_for', 'expression', 'function'}) do
      if rec[field] == nil and prev[field] ~= nil then rec[field] = prev[field] end
    end
    if type(prev['tries']) == 'table' and #prev['tries'] > 0 then tries = prev['tries'] end
  end
  if type(rec['try']) == 'table' then
    tries = tries or {}
    if #tries < 50 then table.insert(tries, rec['try']) end
  end
  rec['try'] = nil
  rec['tries'] = tries
  redis.call('HSET', steps_key, rec['id'], cjson.encode(rec))
end

-- A step's memo, saved once (the first value wins: a step reported twice, by a retried call
-- or a checkpoint whose answer was lost, keeps what it first returned) and appended to the
-- run's step order. True when this call saved it.
local function save_memo(memos_key, stack_key, hashed, memo)
  if redis.call('HSETNX', memos_key, hashed, memo) == 0 then return false end
  redis.call('RPUSH', stack_key, hashed)
  return true
end
