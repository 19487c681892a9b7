-- Record a batch of page views of one site, atomically, in one script call.
-- (Loaded after returns.lua, whose note_day and add_returns it calls.)
--
-- The hits of a batch share their site, local day, minute and writer (store.py groups
-- them so), so the site's counters are read once, added up here and written once: a
-- batch of n hits costs about 5n + 12 commands instead of 16n.
--
-- Shared keys:
-- KEYS[1] = totals    hash  hits, raw: the site's all-time totals; pages: pages kept
-- KEYS[2] = day       hash  hits, raw, h:HH (counted per local hour), drop:<reason>
-- KEYS[3] = visitors  HyperLogLog of visitor ids that local day
-- KEYS[4] = referrers zset  referring host -> counted hits that local day
-- KEYS[5] = rate      hash  visitor id -> hits this minute; expires after the minute
-- KEYS[6] = applied   hash  writer id -> sequence number of its last hit applied here
-- KEYS[7], KEYS[8], KEYS[9] = pages, raw, page_day buckets of the overflow page ARGV[3]
-- KEYS[10] = last bucket of the overflow page
-- KEYS[11] = returns   string: that day's count of pages by the days since each page's
--                      previous counted day, u32 at #g (g = 0: none, or more than ARGV[7])
-- Keys of hit i (j = 11 + 5(i-1)):
-- KEYS[j+1] = pages     hash  path -> counted hits, all time (the path's page bucket)
-- KEYS[j+2] = raw       hash  path -> raw hits, all time (the path's page bucket)
-- KEYS[j+3] = page_day  zset  path -> counted hits that local day (its day bucket)
-- KEYS[j+4] = seen      string, exists while this visitor's view of this path is deduped
-- KEYS[j+5] = last      hash  path -> day number of its latest counted day (page bucket)
-- Shared arguments:
-- ARGV[1] = most distinct pages kept; past it, new paths count as ARGV[3]
-- ARGV[2] = retention of day keys, in seconds
-- ARGV[3] = name of the overflow page, "(other)"
-- ARGV[4] = writer id: the spool of one worker process ("": no replay check)
-- ARGV[5] = seconds the applied hash is kept after a writer's first hit on this site
-- ARGV[6] = the local day as a day number (days since 1970-01-01)
-- ARGV[7] = the longest gap between two days of a page the returns counts tell apart
-- Arguments of hit i (a = 6 + 7(i-1)):
-- ARGV[a+1] = path (normalised)
-- ARGV[a+2] = referring host, or ""
-- ARGV[a+3] = visitor id (a keyed hash; never the IP or User-Agent)
-- ARGV[a+4] = dedupe window in seconds (0: count every view, as for image proxies)
-- ARGV[a+5] = hits allowed per visitor per minute (0: no limit, as for image proxies)
-- ARGV[a+6] = local hour, "00".."23"
-- ARGV[a+7] = this hit's sequence number within its writer (increasing in sending order)
-- Returns, for each hit in order, five values:
--   counted (0|1), reason ("" | "duplicate" | "rate_limited" | "replayed"),
--   page hits, site hits, path

local SHARED_KEYS, KEYS_PER_HIT, SHARED_ARGS, ARGS_PER_HIT = 11, 5, 7, 7
local totals, day, visitors, referrers, rate, applied = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local max_pages = tonumber(ARGV[1])
local retention = ARGV[2]
local other = ARGV[3]
local writer = ARGV[4]
local day_number, max_gap = tonumber(ARGV[6]), tonumber(ARGV[7])
local returns = KEYS[11]
local n = (#ARGV - SHARED_ARGS) / ARGS_PER_HIT

local totals_now = redis.call('HMGET', totals, 'hits', 'pages', 'returns_since')
local site_hits = tonumber(totals_now[1] or '0')
-- The returns counts count any range's distinct pages (Store._distinct_pages) from the
-- first day they are complete: a site created with them, from its start (create_site);
-- a site older than them, from the day after its first hit with them.
local returns_since_unknown = not totals_now[3]
local returns_late = false
-- Replays: a writer sends its hits in sequence order, so a hit whose number is not above
-- the last one applied was applied already (a batch that timed out on the client yet
-- reached Redis, then came back from the spool). It changes nothing, not even the rate.
local last_applied = 0
if writer ~= '' then
  last_applied = tonumber(redis.call('HGET', applied, writer) or '0')
end
-- Pages kept: paths with a raw field (see the cap below).
local pages_before = tonumber(totals_now[2] or '0')
local kept_pages = pages_before

local out, out_len = {}, 0
local raw_count, counted = 0, 0
local per_hour, per_referrer, uniques, per_gap = {}, {}, {}, {}
local highest_seq, rate_used = 0, false

-- One hit's five return values; site hits as they stand after it.
local function push(ok, reason, page_hits, path)
  out[out_len + 1], out[out_len + 2], out[out_len + 3] = ok, reason, page_hits
  out[out_len + 4], out[out_len + 5] = site_hits + counted, path
  out_len = out_len + 5
end

-- A hit not counted: its page's hits as they stand.
local function answer(ok, reason, pages_key, path)
  push(ok, reason, tonumber(redis.call('HGET', pages_key, path) or '0'), path)
end

for i = 1, n do
  local k = SHARED_KEYS + (i - 1) * KEYS_PER_HIT
  local a = SHARED_ARGS + (i - 1) * ARGS_PER_HIT
  local pages_key, raw_key, page_day_key, seen_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local last_key = KEYS[k + 5]
  local path, ref, visitor = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local window, limit, hour, seq = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5]), ARGV[a + 6], tonumber(ARGV[a + 7])

  if writer ~= '' and seq <= last_applied then
    answer(0, 'replayed', pages_key, path)
  else
    if seq > highest_seq then highest_seq = seq end
    -- The rate limit comes first: a visitor past it is a drop, not even a raw hit.
    local limited = false
    if limit > 0 then
      rate_used = true
      limited = redis.call('HINCRBY', rate, visitor, 1) > limit
    end
    if limited then
      redis.call('HINCRBY', day, 'drop:rate_limited', 1)
      answer(0, 'rate_limited', pages_key, path)
    else
      -- A site keeps at most max_pages distinct pages; the rest share one overflow page.
      -- A page is kept once it has a raw field. An import may give a page 0 raw hits,
      -- so a raw count of 1 is a new page only if it has no counted-hits field either
      -- (imports write both fields; a hit's counted field never comes before its raw).
      local new_page
      if kept_pages < max_pages then
        -- Room for a new page: count first, then ask whether it was new.
        new_page = redis.call('HINCRBY', raw_key, path, 1) == 1
          and redis.call('HEXISTS', pages_key, path) == 0
      else
        new_page = redis.call('HEXISTS', raw_key, path) == 0
        if new_page then
          path = other
          pages_key, raw_key, page_day_key = KEYS[7], KEYS[8], KEYS[9]
          last_key = KEYS[10]
          new_page = redis.call('HEXISTS', raw_key, path) == 0
        end
        redis.call('HINCRBY', raw_key, path, 1)
      end
      if new_page then
        kept_pages = kept_pages + 1
      end
      raw_count = raw_count + 1
      if window > 0 and not redis.call('SET', seen_key, '1', 'NX', 'EX', window) then
        answer(0, 'duplicate', pages_key, path)
      else
        counted = counted + 1
        local page_hits = redis.call('HINCRBY', pages_key, path, 1)
        if tonumber(redis.call('ZINCRBY', page_day_key, 1, path)) == 1 then
          -- The path's first hit of the day, maybe its bucket's first: expire it once.
          redis.call('EXPIRE', page_day_key, retention, 'NX')
          -- Its day in the returns index (returns.lua). Days come in order, but a
          -- replayed hit of a day past comes late: the day is marked in the totals.
          if not note_day(last_key, path, day_number, max_gap, per_gap) then
            returns_late = true
          end
        end
        per_hour[hour] = (per_hour[hour] or 0) + 1
        uniques[#uniques + 1] = visitor
        if ref ~= '' then per_referrer[ref] = (per_referrer[ref] or 0) + 1 end
        push(1, '', tonumber(page_hits), path)
      end
    end
  end
end

-- The site's and the day's sums, once per batch. Day keys get their expiry when created.
if highest_seq > 0 and writer ~= '' then
  -- One field per writer (one per worker start); the hash lives ARGV[5] seconds from its
  -- first field, so fields of long-gone workers go with it.
  if redis.call('HSET', applied, writer, highest_seq) == 1 and redis.call('TTL', applied) < 0 then
    redis.call('EXPIRE', applied, ARGV[5])
  end
end
if rate_used then redis.call('EXPIRE', rate, 120) end
-- The day's returns counters, one command for all the batch's first views of a page.
if add_returns(returns, per_gap) then
  redis.call('EXPIRE', returns, retention, 'NX')
end
if returns_since_unknown then
  redis.call('HSET', totals, 'returns_since', day_number + 1)
end
if returns_late then
  redis.call('HSET', totals, 'late:' .. day_number, 1)
end
if kept_pages > pages_before then
  redis.call('HINCRBY', totals, 'pages', kept_pages - pages_before)
end
if raw_count > 0 then
  redis.call('HINCRBY', totals, 'raw', raw_count)
  if redis.call('HINCRBY', day, 'raw', raw_count) == raw_count then redis.call('EXPIRE', day, retention) end
elseif redis.call('TTL', day) == -1 then
  -- Only rate-limit drops so far today: the drop tally created the day hash.
  redis.call('EXPIRE', day, retention)
end
if counted > 0 then
  redis.call('HINCRBY', totals, 'hits', counted)
  local first_of_day = redis.call('HINCRBY', day, 'hits', counted) == counted
  for hour, hits in pairs(per_hour) do redis.call('HINCRBY', day, 'h:' .. hour, hits) end
  redis.call('PFADD', visitors, unpack(uniques))
  if first_of_day then redis.call('EXPIRE', visitors, retention) end
  for host, hits in pairs(per_referrer) do
    if tonumber(redis.call('ZINCRBY', referrers, hits, host)) == hits then
      redis.call('EXPIRE', referrers, retention)
    end
  end
end
return out
