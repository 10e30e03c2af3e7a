-- Redis time (ms) on the node holding KEYS[1]: the clock the events' index scores use
-- (ingest.lua), read by the call that may start a wait's look-back. A script, not TIME,
-- because on a Redis Cluster a keyless command goes to any node.
-- KEYS: 1 any key in the slot whose clock is wanted (it is not read)
-- ARGV: none
-- returns: ms since the epoch
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
