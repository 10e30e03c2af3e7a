-- Retention: take out of a directory of keys (a set or zset naming other keys) the names
-- whose key no longer exists: the search prefix dictionary (words whose zset emptied when
-- its last run or event was deleted) and the set of concurrency waiting zsets (keys of
-- concurrency values nothing waits on any more). Checked and removed in one step, so a
-- name that a script adds back meanwhile (it writes the key and the name together) is kept.
-- The named keys are built by executor/keys.py (prefix + name); they are not in KEYS
-- because which ones exist is what the script finds out.
-- KEYS: 1 the directory (a set when ARGV[1] is 'set', a zset when 'zset')
-- ARGV: 1 'set' | 'zset', 2 key prefix ('' = the names are whole keys), 3.. names
-- returns: the number of names removed
local removed = 0
for i = 3, #ARGV do
  if redis.call('EXISTS', ARGV[2] .. ARGV[i]) == 0 then
    if ARGV[1] == 'set' then
      removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
    else
      removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    end
  end
end
return removed
