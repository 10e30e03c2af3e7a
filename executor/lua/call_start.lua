-- A leased call starts: read with the run's state (state.py), it adds the call's queue
-- wait to its run's `queue_ms` and, for a run's first call, clears the reason it waited
-- (throttle, debounce, batch: set by ingest.lua). The wait lease.lua measured runs from
-- the item's due time; a first call's due time may lie before its run started (priority
-- dates it back), so its wait counts from the later of the two.
-- KEYS: 1 run hash
-- ARGV: 1 the wait lease.lua measured (ms), 2 '1' for a run's first call, 3 lease time (ms)
-- returns: {Redis time (ms; the clock of clock.lua), the wait added (ms; 0 for a run not
--          Running: nothing written)}
local t = redis.call('TIME')
local waited = tonumber(ARGV[1]) or 0
-- a run gone (retention) or ended gets nothing: its call is dropped unmade
if redis.call('HGET', KEYS[1], 'status') ~= 'Running' then waited = 0
elseif ARGV[2] == '1' then
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_at'))
  if started then waited = math.min(waited, math.max(0, tonumber(ARGV[3]) - started)) end
  redis.call('HDEL', KEYS[1], 'waiting_reason')
end
if waited > 0 then redis.call('HINCRBY', KEYS[1], 'queue_ms', waited) end
return {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), waited}
