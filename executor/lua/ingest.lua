-- Store a request's events and start their runs, all or nothing, before the API answers:
-- an accepted event is never lost, and a retried request (same event ids) writes nothing twice.
-- KEYS: 1 events zset, 2 runs zset, 3 items hash, 4 ready zset, 5 wake list
-- ARGV: 1 JSON {now, events: [{key, name_key, id, ts, json}],
--               runs: [{run_key, runs_key, idem_key, idem_ttl, run_id, fields, item, due,
--                       memos_key, stack_key, memos: [[hash, json]...],
--                       steps_key, records: [[hash, json]...],
--                       listeners_key, listeners: [{key, id, json}...],
--                       timers: [{id, json, due}...]}]}
--       (every key inside is built by executor/keys.py)
-- returns: {created_run_id...}; a run is skipped when its idempotency key is taken, or when
--          its event was stored already (a retried request or script: nothing twice)
local p = cjson.decode(ARGV[1])
local repeated = {}
for _, ev in ipairs(p['events']) do
  if redis.call('SET', ev['key'], ev['json'], 'NX') then
    redis.call('ZADD', KEYS[1], ev['ts'], ev['id'])
    redis.call('ZADD', ev['name_key'], ev['ts'], ev['id'])
  else
    repeated[ev['id']] = true
  end
end
local created = {}
for _, r in ipairs(p['runs']) do
  local fresh = not repeated[r['fields']['event_id']]
  if fresh and r['idem_key'] ~= '' then
    fresh = redis.call('SET', r['idem_key'], r['run_id'], 'NX', 'EX', r['idem_ttl'])
  end
  if fresh and redis.call('EXISTS', r['run_key']) == 0 then
    for field, value in pairs(r['fields']) do
      redis.call('HSET', r['run_key'], field, value)
    end
    redis.call('HSET', r['run_key'], 'seq', 1)
    redis.call('ZADD', KEYS[2], p['now'], r['run_id'])
    redis.call('RPUSH', r['runs_key'], r['run_id'])
    for _, memo in ipairs(r['memos'] or {}) do
      redis.call('HSET', r['memos_key'], memo[1], memo[2])
      redis.call('RPUSH', r['stack_key'], memo[1])
    end
    for _, rec in ipairs(r['records'] or {}) do
      redis.call('HSET', r['steps_key'], rec[1], rec[2])
    end
    for _, l in ipairs(r['listeners'] or {}) do
      redis.call('HSET', l['key'], l['id'], l['json'])
      redis.call('SADD', r['listeners_key'], l['key'] .. '|' .. l['id'])
    end
    for _, t in ipairs(r['timers'] or {}) do
      redis.call('HSET', KEYS[3], t['id'], t['json'])
      redis.call('ZADD', KEYS[4], t['due'], t['id'])
    end
    local item = r['item']
    item['id'] = r['run_id'] .. ':1'
    redis.call('HSET', KEYS[3], item['id'], cjson.encode(item))
    redis.call('ZADD', KEYS[4], r['due'], item['id'])
    redis.call('LPUSH', KEYS[5], '1')
    table.insert(created, r['run_id'])
  end
end
redis.call('LTRIM', KEYS[5], 0, 255)
return created
