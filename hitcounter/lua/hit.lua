-- Record one page view of one site, atomically, in one round trip.
--
-- KEYS[1] = pages     zset  path -> counted hits, all time
-- KEYS[2] = raw       hash  path -> raw hits, all time
-- KEYS[3] = totals    hash  hits, raw: the site's all-time totals
-- KEYS[4] = day       hash  hits, raw, h:HH (counted per local hour), drop:<reason>
-- KEYS[5] = page_day  zset  path -> counted hits that local day
-- KEYS[6] = visitors  HyperLogLog of visitor ids that local day
-- KEYS[7] = referrers zset  referring host -> counted hits that local day
-- KEYS[8] = seen      string, exists while this visitor's view of this path is deduped
-- KEYS[9] = rate      string, hits this visitor sent this minute
-- KEYS[10] = applied  hash  writer id -> sequence number of its last hit applied here
-- ARGV[1] = path (normalised)
-- ARGV[2] = referring host, or ""
-- ARGV[3] = visitor id (a keyed hash; never the IP or User-Agent)
-- ARGV[4] = dedupe window in seconds (0: count every view, as for image proxies)
-- ARGV[5] = hits allowed per visitor per minute (0: no limit, as for image proxies)
-- ARGV[6] = most distinct pages kept; past it, new paths count as ARGV[9]
-- ARGV[7] = retention of day keys, in seconds
-- ARGV[8] = local hour, "00".."23"
-- ARGV[9] = name of the overflow page, "(other)"
-- ARGV[10] = writer id: the spool of one worker process ("": no replay check)
-- ARGV[11] = seconds the applied hash is kept after a writer's first hit on this site
-- ARGV[12] = this hit's sequence number within its writer (increasing in sending order)
-- Returns {counted (0|1), reason ("" | "duplicate" | "rate_limited" | "replayed"),
--          page hits, site hits, path}

local path = ARGV[1]
local visitor = ARGV[3]
local retention = tonumber(ARGV[7])

local function counts(p)
  return {tonumber(redis.call('ZSCORE', KEYS[1], p) or '0'), tonumber(redis.call('HGET', KEYS[3], 'hits') or '0')}
end

-- Idempotent replays: a writer sends its hits in sequence order, so a hit whose number is
-- not above the last one applied was applied already (a batch that timed out on the
-- client yet reached Redis, then came back from the spool). Checked first, so a replay
-- changes nothing, not even the rate limit's count.
local writer = ARGV[10]
if writer ~= '' then
  local seq = tonumber(ARGV[12])
  if seq <= tonumber(redis.call('HGET', KEYS[10], writer) or '0') then
    local c = counts(path)
    return {0, 'replayed', c[1], c[2], path}
  end
  -- One field per writer (one per worker start); the hash lives ARGV[11] seconds from
  -- its first field, so fields of long-gone workers go with it.
  if redis.call('HSET', KEYS[10], writer, seq) == 1 and redis.call('TTL', KEYS[10]) < 0 then
    redis.call('EXPIRE', KEYS[10], ARGV[11])
  end
end

-- The rate limit comes first: a visitor past it is a drop, not even a raw hit.
local limit = tonumber(ARGV[5])
if limit > 0 then
  local made = redis.call('INCR', KEYS[9])
  if made == 1 then redis.call('EXPIRE', KEYS[9], 60) end
  if made > limit then
    if redis.call('HINCRBY', KEYS[4], 'drop:rate_limited', 1) == 1 then redis.call('EXPIRE', KEYS[4], retention) end
    local c = counts(path)
    return {0, 'rate_limited', c[1], c[2], path}
  end
end

-- A site keeps at most ARGV[6] distinct pages; the rest share one overflow page.
if not redis.call('ZSCORE', KEYS[1], path) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[6]) then
  path = ARGV[9]
end

redis.call('HINCRBY', KEYS[2], path, 1)
redis.call('HINCRBY', KEYS[3], 'raw', 1)
-- The first raw hit of a local day creates the day hash: give it its expiry then, once.
if redis.call('HINCRBY', KEYS[4], 'raw', 1) == 1 then redis.call('EXPIRE', KEYS[4], retention) end

local window = tonumber(ARGV[4])
if window > 0 then
  if not redis.call('SET', KEYS[8], '1', 'NX', 'EX', window) then
    local c = counts(path)
    return {0, 'duplicate', c[1], c[2], path}
  end
end

local page_hits = redis.call('ZINCRBY', KEYS[1], 1, path)
local site_hits = redis.call('HINCRBY', KEYS[3], 'hits', 1)
redis.call('HINCRBY', KEYS[4], 'h:' .. ARGV[8], 1)
local first_of_day = redis.call('HINCRBY', KEYS[4], 'hits', 1) == 1
redis.call('ZINCRBY', KEYS[5], 1, path)
redis.call('PFADD', KEYS[6], visitor)
if first_of_day then
  -- Both keys were just created by the first counted hit of the day.
  redis.call('EXPIRE', KEYS[5], retention)
  redis.call('EXPIRE', KEYS[6], retention)
end
if ARGV[2] ~= '' then
  if tonumber(redis.call('ZINCRBY', KEYS[7], 1, ARGV[2])) == 1 then
    redis.call('EXPIRE', KEYS[7], retention)
  end
end
return {1, '', tonumber(page_hits), site_hits, path}
