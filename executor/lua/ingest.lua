-- Store a request's events and start their runs, all or nothing, before the API answers:
-- an accepted event is never lost, and a retried request (same event ids) writes nothing twice.
-- Start-time flow control is decided here, atomically: idempotency, rate limit, singleton,
-- debounce, batching, throttle (and priority through the first item's due time).
-- What an event does to runs already there (resume a wait, cancel on `cancelOn`, replace a
-- singleton) is stored here too, as one `intake` queue item written with the events: the
-- caller does that work at once under the item's lease and drops it; if the caller dies
-- first, the lease expires and a worker does it. A kill -9 after this script loses nothing.
-- KEYS: 1 events zset, 2 runs zset, 3 items hash, 4 ready zset, 5 wake list,
--       6 running-runs zset, 7 leased zset, 8 leases hash; 9.. every other key the JSON
--       names, each once (executor/ingest.py `script_args` lays them out; every key is
--       built by executor/keys.py). Below, "k" is such a key's position in KEYS.
-- ARGV: 1 JSON {now, intake_id, registry: {key: k, version} (optional: the registry
--               version key and the version the runs were planned with),
--               expect: [[k, field, run id ('' = none), k of that run's hash (0 = none:
--                         a run of another shard, counted as ended)]...] (optional: what
--                       the caller read just before: the run each debounce and batch hash
--                       (field `run`) of the runs names; an event joining a pending run
--                       writes that run's hash),
--               lease: {token, expiry, handoff} (optional: the caller takes
--               the intake item, and up to `handoff` first calls of new runs due now that
--               take no concurrency slot, leased under `token`),
--               events: [{key: k, name_key: k, id, ts, json, user_key: k, terms,
--                         dedupe_key: k, dedupe_ttl, match_keys: [k...], match}],
--               starts: [[event id, function id]...] (optional: runs these events start in
--                        other shards, named in the intake item until they are started),
--               runs: [{run_key: k, runs_key: k, fn_runs_key: k,
--                       idem_keys: [[k, ttl_s, label]...],
--                       skip (a reason decided before: a key expression failed), run_id, fields,
--                       item, due, memos_key: k, stack_key: k, memos: [[hash, json]...],
--                       steps_key: k, records: [[hash, json]...], listeners_key: k,
--                       listeners: [{key: k, id, json, member}...],
--                       timers: [{id, json, due}...],
--                       flow: {rate: {key: k, limit, period},
--                              singleton: {key: k (the singletons hash), name, mode},
--                              debounce: {key: k, period, timeout},
--                              batch: {key: k, max, timeout},
--                              throttle: {key: k, limit, period, burst}} (each optional),
--                       ix: the dashboard's indexes and counters (optional; see
--                       executor/indexes.py start_plan; keys as k)}]}
--       An event's `user_key` (absent = none) indexes it among the user's events, its
--       `terms` ([k, score, member], '' = its receipt time / its id) make it searchable;
--       `dedupe_key` (absent = none) holds the id of the event stored for the sender's
--       event id for `dedupe_ttl` s; `match_keys`: keys whose existence means something
--       may wait for this event (its pauses); `match`: true when the caller knows
--       something may (the pauses are in other shards too). A listener's `member` is its
--       entry in the run's listeners set.
-- returns: JSON {stale: true} when the registry version is not `registry.version`, and
--          {stale: true, moved: true, holders: [what each hash of `expect` names now,
--          in its order]} when one no longer names the run the caller read (both: nothing
--          written; the caller goes again, with the runs named now), else
--          JSON {created: [run id...], handed: [leased first item JSON...],
--                clock: Redis time (ms) of this script (the events' index scores),
--                repeated: {event id: id of the event stored before for the same sender id},
--                intake: the intake item JSON (absent when there is nothing to do)}.
--          Runs created include skipped ones (status Skipped and the reason; a run whose
--          idempotency key is taken is Skipped naming the run holding it); a debounced or
--          batched event joins a pending run instead. No run is created when its event was
--          stored already (a retried request or a sender's repeated event id) or it exists.
-- The events' index scores are Redis time (TIME), the clock the look-back scans of waits
-- read too, so processes whose clocks disagree cannot hide an event from a wait.
--#include stats
local p = cjson.decode(ARGV[1])
-- runs planned with a function set older than the stored one: write nothing, say so. (In
-- shards other than 0 the stored version is a copy written after each sync: one behind
-- the version planned with, read from the counter itself, is caught up here.)
local registry = p['registry']
local registry_behind = false
if type(registry) == 'table' then
  local stored = tonumber(redis.call('GET', KEYS[registry['key']]) or '0')
  local planned = tonumber(registry['version']) or -1  -- none loaded yet: stale
  if stored > planned then return cjson.encode({stale = true}) end
  registry_behind = stored < planned
end
-- the hash key of each run a debounce or batch may name, by run id: the runs
-- the caller read there, then each run this script starts. A run is never found by
-- building its key from its id here: when a hash names another run than the caller read
-- (written since), nothing is written and the caller reads again.
local run_keys = {}
local held_now, moved = {}, false
for i, e in ipairs(p['expect'] or {}) do
  held_now[i] = redis.call('HGET', KEYS[e[1]], e[2]) or ''
  if held_now[i] ~= e[3] then moved = true end
  if e[3] ~= '' and e[4] > 0 then run_keys[e[3]] = KEYS[e[4]] end
end
if moved then  -- what each names now: the caller goes again with those, no read between
  return cjson.encode({stale = true, moved = true, holders = held_now})
end
if registry_behind then redis.call('SET', KEYS[registry['key']], registry['version']) end
local now = tonumber(p['now'])
local clock = redis.call('TIME')
local redis_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = p['lease']
local repeated, stored_as, to_match = {}, {}, {}
for _, ev in ipairs(p['events']) do
  local prior = nil
  if ev['dedupe_key'] then
    local dedupe_key = KEYS[ev['dedupe_key']]
    prior = redis.call('GET', dedupe_key)
    if prior then
      repeated[ev['id']] = true
      stored_as[ev['id']] = prior
    else
      redis.call('SET', dedupe_key, ev['id'], 'EX', ev['dedupe_ttl'])
    end
  end
  if not prior and redis.call('SET', KEYS[ev['key']], ev['json'], 'NX') then
    redis.call('ZADD', KEYS[1], ev['ts'], ev['id'])
    redis.call('ZADD', KEYS[ev['name_key']], redis_ms, ev['id'])
    if ev['user_key'] then redis.call('ZADD', KEYS[ev['user_key']], ev['ts'], ev['id']) end
    for _, t in ipairs(ev['terms'] or {}) do
      local score, member = t[2], t[3]
      if score == '' then score = ev['ts'] end
      if member == '' then member = ev['id'] end
      redis.call('ZADD', KEYS[t[1]], score, member)
    end
    if ev['match'] then
      table.insert(to_match, ev['id'])
    else
      for _, k in ipairs(ev['match_keys'] or {}) do
        if redis.call('EXISTS', KEYS[k]) == 1 then
          table.insert(to_match, ev['id'])
          break
        end
      end
    end
  else
    repeated[ev['id']] = true
  end
end

local function wake()
  redis.call('LPUSH', KEYS[5], '1')
end

-- join a pending (not yet started) run: debounce replaces its event, batch appends one
local function pending(run_id)
  if not run_id or not run_keys[run_id] then return nil end
  if redis.call('ZSCORE', KEYS[4], run_id .. ':1') then return run_id end
  return nil
end

local created, to_cancel, handed = {}, {}, {}
for _, r in ipairs(p['runs']) do
  local f = r['fields']
  local run_key = KEYS[r['run_key']]
  local fresh = not repeated[f['event_id']] and redis.call('EXISTS', run_key) == 0
  local flow = r['flow'] or {}
  local skipped, joined = r['skip'], false
  local due = tonumber(r['due'])
  if fresh then run_keys[r['run_id']] = run_key end
  for _, idem in ipairs(r['idem_keys'] or {}) do
    local idem_key = KEYS[idem[1]]
    if fresh and not skipped
       and not redis.call('SET', idem_key, r['run_id'], 'NX', 'EX', idem[2]) then
      skipped = 'skipped: ' .. idem[3] .. ' (run ' .. (redis.call('GET', idem_key) or '?') .. ')'
    end
  end

  if fresh and flow['rate'] then
    local rate = flow['rate']
    local rate_key = KEYS[rate['key']]
    redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now - rate['period'])
    if redis.call('ZCARD', rate_key) >= rate['limit'] then
      skipped = 'skipped: rate limited'
    else
      redis.call('ZADD', rate_key, now, r['run_id'])
      redis.call('PEXPIRE', rate_key, rate['period'])
    end
  end

  if fresh and not skipped and flow['singleton'] then
    -- a singleton's field names the run holding it from the script that creates that run
    -- (below: a run that is skipped or joins a debounce or batch holds nothing) until the
    -- script that ends it (lib_end_run.lua): a field present is a Running holder
    local s = flow['singleton']
    local current = redis.call('HGET', KEYS[s['key']], s['name'])
    if current then
      if s['mode'] == 'skip' then
        skipped = 'skipped: singleton run ' .. current .. ' is active'
      else
        table.insert(to_cancel, current)
      end
    end
  end

  if fresh and not skipped and flow['debounce'] then
    local d = flow['debounce']
    local debounce_key = KEYS[d['key']]
    local target = pending(redis.call('HGET', debounce_key, 'run'))
    if target then
      local first = tonumber(redis.call('HGET', debounce_key, 'first'))
      local at = now + d['period']
      if d['timeout'] then at = math.min(at, first + d['timeout']) end
      redis.call('HSET', run_keys[target], 'event', f['event'], 'events', f['events'],
                 'event_id', f['event_id'], 'waiting_reason', 'debounced until ' .. at)
      redis.call('ZADD', KEYS[4], 'XX', at, target .. ':1')
      redis.call('PEXPIRE', debounce_key, d['period'] + (d['timeout'] or d['period']) + 60000)
      redis.call('RPUSH', KEYS[r['runs_key']], target)
      joined = true
    else
      redis.call('DEL', debounce_key)
      redis.call('HSET', debounce_key, 'run', r['run_id'], 'first', now)
      redis.call('PEXPIRE', debounce_key, d['period'] + (d['timeout'] or d['period']) + 60000)
      due = now + d['period']
      f['waiting_reason'] = 'debounced until ' .. due
    end
  end

  if fresh and not skipped and not joined and flow['batch'] then
    local b = flow['batch']
    local batch_key = KEYS[b['key']]
    local target = pending(redis.call('HGET', batch_key, 'run'))
    if target then
      local target_key = run_keys[target]
      local events = redis.call('HGET', target_key, 'events')
      -- append the event's JSON without decoding user data (cjson would alter it)
      redis.call('HSET', target_key, 'events', string.sub(events, 1, -2) .. ',' ..
                 string.sub(f['events'], 2))
      local count = redis.call('HINCRBY', batch_key, 'count', 1)
      redis.call('RPUSH', KEYS[r['runs_key']], target)
      if count >= b['max'] then
        redis.call('DEL', batch_key)
        redis.call('ZADD', KEYS[4], 'XX', now, target .. ':1')
        redis.call('HDEL', target_key, 'waiting_reason')
        wake()
      end
      joined = true
    else
      redis.call('DEL', batch_key)
      redis.call('HSET', batch_key, 'run', r['run_id'], 'count', 1)
      redis.call('PEXPIRE', batch_key, b['timeout'] + 60000)
      if b['max'] > 1 then
        due = now + b['timeout']
        f['waiting_reason'] = 'batching events until ' .. due
      end
    end
  end

  if fresh and not skipped and not joined and flow['throttle'] then
    -- GCRA: `limit` starts at once, then one every period/limit; `burst` more at once
    local t = flow['throttle']
    local throttle_key = KEYS[t['key']]
    local interval = t['period'] / t['limit']
    local tolerance = interval * (t['limit'] + t['burst'] - 1)
    local tat = tonumber(redis.call('GET', throttle_key) or now)
    if tat < now then tat = now end
    local start = math.max(now, tat - tolerance)
    redis.call('SET', throttle_key, tostring(tat + interval), 'PX',
               math.ceil(tat + interval - now + t['period']))
    if start > due then
      due = start
      f['waiting_reason'] = 'throttled until ' .. start
    end
  end

  if fresh and not joined then
    if skipped then
      f['status'] = 'Skipped'
      f['output'] = cjson.encode({reason = skipped})
      f['ended_at'] = tostring(now)
      f['waiting_reason'] = skipped
    end
    for field, value in pairs(f) do
      redis.call('HSET', run_key, field, value)
    end
    redis.call('HSET', run_key, 'seq', 1)
    redis.call('ZADD', KEYS[2], now, r['run_id'])
    redis.call('ZADD', KEYS[r['fn_runs_key']], now, r['run_id'])
    redis.call('RPUSH', KEYS[r['runs_key']], r['run_id'])
    table.insert(created, r['run_id'])
    local ix = r['ix']
    if ix then
      local stat_keys = {}
      for i, k in ipairs(ix['stats']) do stat_keys[i] = KEYS[k] end
      if skipped then
        redis.call('ZADD', KEYS[ix['skipped']], now, r['run_id'])
        redis.call('ZADD', KEYS[ix['skipped_fn']], now, r['run_id'])
        count_stats(stat_keys, ix['exp'], {'Skipped'})
      else
        redis.call('ZADD', KEYS[ix['running_fn']], now, r['run_id'])
        count_stats(stat_keys, ix['exp'], {'started'})
      end
      for _, t in ipairs(ix['terms']) do
        local score, member = t[2], t[3]
        if score == '' then score = now end
        if member == '' then member = r['run_id'] end
        redis.call('ZADD', KEYS[t[1]], score, member)
      end
    end
    if not skipped then
      if flow['singleton'] then
        redis.call('HSET', KEYS[flow['singleton']['key']], flow['singleton']['name'], r['run_id'])
      end
      redis.call('ZADD', KEYS[6], now, r['run_id'])
      for _, memo in ipairs(r['memos'] or {}) do
        redis.call('HSET', KEYS[r['memos_key']], memo[1], memo[2])
        redis.call('RPUSH', KEYS[r['stack_key']], memo[1])
      end
      for _, rec in ipairs(r['records'] or {}) do
        redis.call('HSET', KEYS[r['steps_key']], rec[1], rec[2])
      end
      for _, l in ipairs(r['listeners'] or {}) do
        redis.call('HSET', KEYS[l['key']], l['id'], l['json'])
        redis.call('SADD', KEYS[r['listeners_key']], l['member'])
      end
      for _, t in ipairs(r['timers'] or {}) do
        redis.call('HSET', KEYS[3], t['id'], t['json'])
        redis.call('ZADD', KEYS[4], t['due'], t['id'])
      end
      local item = r['item']
      item['id'] = r['run_id'] .. ':1'
      local encoded = cjson.encode(item)
      redis.call('HSET', KEYS[3], item['id'], encoded)
      -- hand the first call straight to the caller's worker: no wake, no BLPOP, no lease
      -- round trip between the event and the first line of the function
      if lease and #handed < tonumber(lease['handoff']) and due <= now
         and (type(item['ck']) ~= 'table' or #item['ck'] == 0) then
        redis.call('ZADD', KEYS[7], lease['expiry'], item['id'])
        redis.call('HSET', KEYS[8], item['id'], lease['token'])
        table.insert(handed, encoded)
      else
        redis.call('ZADD', KEYS[4], due, item['id'])
        wake()
      end
    end
  end
end
local out = {created = created, handed = handed, repeated = stored_as, clock = redis_ms}
-- the runs to start in other shards of the events stored here (not of repeated ones)
local starts = {}
for _, s in ipairs(p['starts'] or {}) do
  if not repeated[s[1]] then table.insert(starts, s) end
end
if #to_match > 0 or #to_cancel > 0 or #starts > 0 then
  local intake = cjson.encode({id = p['intake_id'], run_id = '', fn_id = '', kind = 'intake',
                               payload = {events = to_match, replaced = to_cancel,
                                          starts = starts}})
  redis.call('HSET', KEYS[3], p['intake_id'], intake)
  if lease then
    redis.call('ZADD', KEYS[7], lease['expiry'], p['intake_id'])
    redis.call('HSET', KEYS[8], p['intake_id'], lease['token'])
  else
    redis.call('ZADD', KEYS[4], now, p['intake_id'])
    wake()
  end
  out['intake'] = intake
end
redis.call('LTRIM', KEYS[5], 0, 255)
return cjson.encode(out)
