-- Lease up to `limit` due queue items to one worker.
-- KEYS: 1 ready zset, 2 leased zset, 3 leases hash, 4 items hash
-- ARGV: 1 now_ms, 2 lease expiry ms, 3 lease token, 4 limit
-- returns: {next_due_ms_or_-1, item_json...}; next_due is the earliest score left in
--          ready (so an idle worker knows how long it may block), -1 when ready is empty.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {-1}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  local item = redis.call('HGET', KEYS[4], id)
  if item then
    redis.call('ZADD', KEYS[2], ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[3])
    table.insert(out, item)
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head[2] then out[1] = tonumber(head[2]) end
return out
