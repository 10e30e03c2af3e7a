-- Shared (--#include slots): the concurrency slots a caller named. A queue item's `ck`
-- lists the slots its calls take by name ({n, limit, label}; items written before slots
-- had names hold the holders' key in `key` instead). The caller passes each name's keys in
-- KEYS from position `k` (the slot's holders zset, then its waiting zset: keys.slot_keys)
-- and the names as a JSON list in one argument, in the same order.
-- named_slots(k, names_json) -> {name -> {key = holders zset, wait = waiting zset}}, and
--   how many names (their keys end at KEYS[k + 2 * count - 1])
-- slot_name(entry) -> the name of one `ck` entry
local function named_slots(k, names_json)
  local slots, count = {}, 0
  if names_json and names_json ~= '' then
    for i, name in ipairs(cjson.decode(names_json)) do
      slots[name] = {key = KEYS[k + 2 * (i - 1)], wait = KEYS[k + 2 * (i - 1) + 1]}
      count = i
    end
  end
  return slots, count
end

local function slot_name(entry)
  return entry['n'] or entry['key']
end

-- the keys of every slot of `ck` (a call's), or nil when the caller named not all of them
local function slots_of(slots, ck)
  local found = {}
  if type(ck) ~= 'table' then return found end
  for i, entry in ipairs(ck) do
    local s = slots[slot_name(entry)]
    if not s then return nil end
    found[i] = {key = s.key, wait = s.wait, limit = tonumber(entry['limit']),
                label = entry['label'], name = slot_name(entry)}
  end
  return found
end
