-- Lease up to `limit` due queue items to one worker, respecting concurrency limits: an item
-- whose slot (per function or key) is full moves to that key's waiting set, so it never
-- blocks the head of the shared ready queue; release_slots brings it back.
-- A call's queue wait (from when it was due, or from its run's start for a first call that
-- priority dated back, to now) is added to its run's `queue_ms` and handed to the worker in
-- the item as `queued_ms`, so the call's attempt records it.
-- KEYS: 1 ready zset, 2 leased zset, 3 leases hash, 4 items hash,
--       5 (optional) set of the concurrency waiting zsets that ever held an item
-- ARGV: 1 now_ms, 2 lease expiry ms, 3 lease token, 4 limit, 5 run key prefix
-- returns: {next_due_ms_or_-1, item_json...}; next_due is the earliest score left in
--          ready (so an idle worker knows how long it may block), -1 when ready is empty.
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0,
                       tonumber(ARGV[4]) * 4)
local out = {-1}
local taken = 0
for i = 1, #due, 2 do
  if taken >= tonumber(ARGV[4]) then break end
  local id = due[i]
  redis.call('ZREM', KEYS[1], id)
  local raw = redis.call('HGET', KEYS[4], id)
  if raw then
    local item = cjson.decode(raw)
    local blocked = nil
    local slots = item['ck']
    -- only a call to the app takes a concurrency slot; timers and pause starts carry the
    -- run's slots in `ck` for the call that follows them
    if item['kind'] and item['kind'] ~= 'call' then slots = nil end
    if type(slots) == 'table' and #slots > 0 then
      for _, slot in ipairs(slots) do
        redis.call('ZREMRANGEBYSCORE', slot['key'], '-inf', now)  -- leases that expired
        if not blocked and redis.call('ZCARD', slot['key']) >= slot['limit'] then
          blocked = slot
        end
      end
    end
    local run_key = ARGV[5] .. item['run_id']
    if blocked then
      redis.call('ZADD', blocked['wait'], due[i + 1], id)
      if KEYS[5] then redis.call('SADD', KEYS[5], blocked['wait']) end
      redis.call('HSET', run_key, 'waiting_reason', blocked['label'])
    else
      if type(slots) == 'table' then
        for _, slot in ipairs(slots) do redis.call('ZADD', slot['key'], ARGV[2], id) end
      end
      if type(slots) == 'table' and #slots > 0 or string.sub(id, -2) == ':1' then
        redis.call('HDEL', run_key, 'waiting_reason')
      end
      redis.call('ZADD', KEYS[2], ARGV[2], id)
      redis.call('HSET', KEYS[3], id, ARGV[3])
      if (item['kind'] or 'call') == 'call' then
        local since = tonumber(due[i + 1])
        if string.sub(id, -2) == ':1' then
          since = math.max(since, tonumber(redis.call('HGET', run_key, 'started_at')) or since)
        end
        local waited = math.max(0, now - since)
        if waited > 0 then
          redis.call('HINCRBY', run_key, 'queue_ms', waited)
          raw = string.sub(raw, 1, -2) .. ',"queued_ms":' .. string.format('%d', waited) .. '}'
        end
      end
      table.insert(out, raw)
      taken = taken + 1
    end
  end
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if head[2] then out[1] = tonumber(head[2]) end
return out
