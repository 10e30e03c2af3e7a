-- Shared (--#include stats): the exact per-function counters of executor/metrics_store.py,
-- in the function's minute hash and hour hash (metric -> count), each expiring at the time
-- its caller passes (unix ms).
local function stat_bucket(ms)
  ms = tonumber(ms) or 0
  if ms < 0 then ms = 0 end
  return math.floor(math.log(ms + 1) / math.log(2) * 16 + 1e-9)
end

local function count_stats(stat_keys, expiries, fields)
  for i, key in ipairs(stat_keys) do
    for _, field in ipairs(fields) do
      redis.call('HINCRBY', key, field, 1)
    end
    redis.call('PEXPIREAT', key, expiries[i])
  end
end
