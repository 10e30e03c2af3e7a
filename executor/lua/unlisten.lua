-- Remove an ended run's pauses and cancel listeners, after its end: the scripts that end a
-- run cannot name their hashes in KEYS, so they leave them and queue the run in the outbox,
-- whose processing reads the run's listeners set and calls this (state.py `unlisten`).
-- Idempotent: a crash before it is redone by the outbox sweep. A run still Running is left
-- alone (its pauses are live).
-- KEYS: 1 run hash, 2 listeners set, 3.. the hash of each pause named in ARGV (in order)
-- ARGV: per pause j (KEYS[j + 2]): ARGV[2j - 1] its id, ARGV[2j] its member in the
--       listeners set
-- returns: the number of pauses removed; -1 the run is Running (nothing written)
if redis.call('HGET', KEYS[1], 'status') == 'Running' then return -1 end
local removed = 0
for j = 1, #KEYS - 2 do
  removed = removed + redis.call('HDEL', KEYS[j + 2], ARGV[2 * j - 1])
  redis.call('SREM', KEYS[2], ARGV[2 * j])
end
return removed
