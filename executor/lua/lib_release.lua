-- Shared by the scripts that take an item out of the leased set (included where a script
-- says --#include release). Frees the concurrency slots the item held, and moves the oldest
-- item each slot held back into the ready queue (at its original due time) to compete again.
local function release_slots(ready_key, wake_key, id, raw)
  if not raw then return end
  local item = cjson.decode(raw)
  if type(item['ck']) ~= 'table' then return end
  if item['kind'] and item['kind'] ~= 'call' then return end  -- it took no slot (lease.lua)
  for _, slot in ipairs(item['ck']) do
    redis.call('ZREM', slot['key'], id)
    local head = redis.call('ZRANGE', slot['wait'], 0, 0, 'WITHSCORES')
    if head[1] then
      redis.call('ZREM', slot['wait'], head[1])
      redis.call('ZADD', ready_key, head[2], head[1])
      redis.call('LPUSH', wake_key, '1')
    end
  end
end
