-- The backlog per function, read-only: queue items due by now that no worker has taken yet,
-- and items a concurrency limit holds back (they were due too). Items are counted under
-- their function, with the oldest due time.
-- KEYS: 1 ready zset, 2 items hash, 3.. the waiting zsets of the shard's concurrency slots
--       (the caller reads their names from the shard's set of them)
-- ARGV: 1 now_ms, 2 at most this many items examined
-- returns: {examined, capped (0|1), function id, count, oldest due ms, function id, ...}
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local per, order, examined, capped = {}, {}, 0, 0
local function count(id, due)
  local raw = redis.call('HGET', KEYS[2], id)
  if not raw then return end
  local fn = cjson.decode(raw)['fn_id'] or ''
  local entry = per[fn]
  if not entry then
    entry = {0, due}
    per[fn] = entry
    table.insert(order, fn)
  end
  entry[1] = entry[1] + 1
  if due < entry[2] then entry[2] = due end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, cap)
for i = 1, #due, 2 do
  count(due[i], tonumber(due[i + 1]))
  examined = examined + 1
end
if examined >= cap then capped = 1 end
for k = 3, #KEYS do
  if capped == 1 then break end
  local held = redis.call('ZRANGE', KEYS[k], 0, cap - examined - 1, 'WITHSCORES')
  for i = 1, #held, 2 do
    count(held[i], tonumber(held[i + 1]))
    examined = examined + 1
  end
  if examined >= cap then capped = 1 end
end
local out = {examined, capped}
for _, fn in ipairs(order) do
  table.insert(out, fn)
  table.insert(out, per[fn][1])
  table.insert(out, string.format('%d', per[fn][2]))
end
return out
