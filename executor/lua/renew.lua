-- Extend a lease while its call is in flight.
-- KEYS: 1 leased zset, 2 leases hash, 3 items hash
-- ARGV: 1 item id, 2 lease token, 3 new expiry ms
-- returns: 1 renewed; 0 the lease is no longer ours (expired and reaped, or finished)
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if raw then
  local slots = cjson.decode(raw)['ck']
  if type(slots) == 'table' then
    for _, slot in ipairs(slots) do redis.call('ZADD', slot['key'], 'XX', ARGV[3], ARGV[1]) end
  end
end
return 1
