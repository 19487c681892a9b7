-- Tally one dropped request of a known site, by reason, in its local day.
--
-- KEYS[1] = day  hash  drop:<reason> counters (the same hash hits.lua writes)
-- ARGV[1] = reason: bot | origin | invalid | rate_limited
-- ARGV[2] = retention of day keys, in seconds
-- Returns the day's count for that reason.

local n = redis.call('HINCRBY', KEYS[1], 'drop:' .. ARGV[1], 1)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
