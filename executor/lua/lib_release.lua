-- Shared by the scripts that take an item out of the leased set (included where a script
-- says --#include release). Frees the concurrency slots the item held, and moves the oldest
-- item each slot held back into the ready queue (at its original due time) to compete again.
-- `slots`: the slots the caller named (lib_slots.lua named_slots); a call's slot the caller
-- did not name is a caller's bug: the script fails, nothing written.
--#include slots
local function release_slots(slots, ready_key, wake_key, id, raw)
  if not raw then return end
  local item = cjson.decode(raw)
  if type(item['ck']) ~= 'table' then return end
  if item['kind'] and item['kind'] ~= 'call' then return end  -- it took no slot (lease.lua)
  local held = slots_of(slots, item['ck'])
  if not held then return error('release: the keys of a slot of ' .. id .. ' were not passed') end
  for _, slot in ipairs(held) do
    redis.call('ZREM', slot.key, id)
    local head = redis.call('ZRANGE', slot.wait, 0, 0, 'WITHSCORES')
    if head[1] then
      redis.call('ZREM', slot.wait, head[1])
      redis.call('ZADD', ready_key, head[2], head[1])
      redis.call('LPUSH', wake_key, '1')
    end
  end
end
