-- Retention: take out of a directory (a set or zset of names of other keys) the names whose
-- key no longer exists: the search prefix dictionary (words whose zset emptied when its
-- last run or event was deleted) and the set of concurrency slots whose waiting zset
-- emptied. Checked and removed in one step, so a name that a script adds back meanwhile
-- (it writes the key and the name together) is kept. The caller builds each name's key
-- (executor/keys.py) and passes it.
-- KEYS: 1 the directory (a set when ARGV[1] is 'set', a zset when 'zset'),
--       2.. the key of each name
-- ARGV: 1 'set' | 'zset', 2.. the names, in the order of their keys
-- returns: the number of names removed
local removed = 0
for i = 2, #ARGV do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    if ARGV[1] == 'set' then
      removed = removed + redis.call('SREM', KEYS[1], ARGV[i])
    else
      removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    end
  end
end
return removed
