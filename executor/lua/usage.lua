-- Record the usage (tokens, cost) a step body reported during one call to the app, and add
-- what is new to the step's, the run's and the function's totals. A step body reports its
-- usage so far (in heartbeats while it runs, then with its opcode or checkpoint) with the
-- number of usage() calls it sums: a report replaces the one kept for that call and step only
-- when it sums more calls, and only the difference is added, so a repeated, late or reordered
-- report never counts twice. (One call may run several steps: SDK checkpointing.)
-- The run's totals live in the run hash, where the worker's budget check reads them.
-- KEYS: 1 run hash, 2 run usage hash, 3 function usage hash
-- ARGV: 1 call id, 2 hashed step id, 3 step name, 4 attempt (1-based), 5 report JSON
--       {calls, models: {name: {input_tokens, output_tokens, cost_usd}}}, 6 now_ms
-- returns: {0} no such run (nothing written); {2} nothing new: a report of as many calls
--          was kept already for this call and step (nothing written); {1, delta JSON {name: {input_tokens,
--          output_tokens, cost_usd}}, run cost_usd, run tokens} applied
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local report = cjson.decode(ARGV[5])
local call_field = 'c:' .. ARGV[1] .. ':' .. ARGV[2]
local kept = redis.call('HGET', KEYS[2], call_field)
local before = {}
if kept then
  local old = cjson.decode(kept)
  if tonumber(old['calls']) >= tonumber(report['calls']) then return {2} end
  before = old['models']
end

local FIELDS = {'input_tokens', 'output_tokens', 'cost_usd'}
local delta = {}
for name, now in pairs(report['models']) do
  local was = before[name] or {}
  local d = {}
  for _, f in ipairs(FIELDS) do
    d[f] = math.max(0, (tonumber(now[f]) or 0) - (tonumber(was[f]) or 0))
  end
  delta[name] = d
end
redis.call('HSET', KEYS[2], call_field, cjson.encode({calls = report['calls'],
  models = report['models'], step = ARGV[2], attempt = tonumber(ARGV[4])}))

local function add(into, d)
  for _, f in ipairs(FIELDS) do into[f] = (tonumber(into[f]) or 0) + d[f] end
end
local function money(x) return string.format('%.12f', x) end

-- the step: its totals, per model and per attempt
local step_field = 's:' .. ARGV[2]
local step = redis.call('HGET', KEYS[2], step_field)
step = step and cjson.decode(step) or {name = ARGV[3], models = {}, attempts = {}}
local attempt = step['attempts'][ARGV[4]] or {}
for name, d in pairs(delta) do
  add(step, d)
  add(attempt, d)
  step['models'][name] = step['models'][name] or {}
  add(step['models'][name], d)
end
step['attempts'][ARGV[4]] = attempt
redis.call('HSET', KEYS[2], step_field, cjson.encode(step))

-- the run (budget) and the function (per day and per model)
local day = 'd:' .. math.floor(tonumber(ARGV[6]) / 86400000)
local models = redis.call('HGET', KEYS[1], 'usage_models')
models = models and cjson.decode(models) or {}
if redis.call('HEXISTS', KEYS[1], 'cost_usd') == 0 then
  redis.call('HINCRBY', KEYS[3], 'runs', 1)
end
for name, d in pairs(delta) do
  models[name] = models[name] or {}
  add(models[name], d)
  local tokens = d['input_tokens'] + d['output_tokens']
  redis.call('HINCRBYFLOAT', KEYS[1], 'cost_usd', money(d['cost_usd']))
  redis.call('HINCRBY', KEYS[1], 'input_tokens', d['input_tokens'])
  redis.call('HINCRBY', KEYS[1], 'output_tokens', d['output_tokens'])
  redis.call('HINCRBYFLOAT', KEYS[3], 'cost_usd', money(d['cost_usd']))
  redis.call('HINCRBY', KEYS[3], 'input_tokens', d['input_tokens'])
  redis.call('HINCRBY', KEYS[3], 'output_tokens', d['output_tokens'])
  redis.call('HINCRBYFLOAT', KEYS[3], day .. ':cost_usd', money(d['cost_usd']))
  redis.call('HINCRBY', KEYS[3], day .. ':tokens', tokens)
  redis.call('HINCRBYFLOAT', KEYS[3], 'm:' .. name .. ':cost_usd', money(d['cost_usd']))
  redis.call('HINCRBY', KEYS[3], 'm:' .. name .. ':tokens', tokens)
end
redis.call('HSET', KEYS[1], 'usage_models', cjson.encode(models))
local run = redis.call('HMGET', KEYS[1], 'cost_usd', 'input_tokens', 'output_tokens')
return {1, cjson.encode(delta), run[1] or '0',
        (tonumber(run[2]) or 0) + (tonumber(run[3]) or 0)}
