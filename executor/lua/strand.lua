-- The invariant sweep's verdict on one run: a Running run must have a queue item (a call,
-- a timer, a pause's timeout, a planned step) or a pause; one that has neither can never
-- move again, so it fails with the reason instead of staying Running forever. Checked and
-- failed in one step, so work that is handed from item to item meanwhile is never mistaken
-- for a stranded run. Item ids all start with "<run id>:" (the MATCH is not a key).
-- KEYS: 1 items hash, 2 run hash, 3 listeners set, 4 outbox zset, 5 running-runs zset,
--       6 the shard's singletons hash, 7.. (optional) the dashboard's indexes (see
--       lib_end_run.lua)
-- ARGV: 1 run id, 2 now_ms, 3 output JSON (the reason), 4.. the indexes' arguments
-- returns: 1 failed as stranded; 0 the run is fine (has an item or a pause);
--          2 the run is not running (its entry in the running index was stale, now removed)
--#include end_run
if redis.call('HGET', KEYS[2], 'status') ~= 'Running' then
  redis.call('ZREM', KEYS[5], ARGV[1])
  return 2
end
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[1], cursor, 'MATCH', ARGV[1] .. ':*', 'COUNT', 1000)
  if #page[2] > 0 then return 0 end
  cursor = page[1]
until cursor == '0'
-- a member holds its pause's id (`<run id>:cancel:<n>` for a cancel listener), whichever
-- form it has (pause_index.PauseRef)
for _, entry in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if not string.find(entry, ARGV[1] .. ':cancel:', 1, true) then return 0 end
end
redis.call('HSET', KEYS[2], 'status', 'Failed', 'output', ARGV[3], 'ended_at', ARGV[2])
end_run(KEYS[2], KEYS[4], KEYS[5], KEYS[6], ARGV[2], 7, 4)
return 1
