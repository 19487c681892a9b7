-- Keep the returns index (see hits.lua and Store._distinct_pages) for a day an import
-- restored: the day's paths, as the hit script notes a path's first hit of a day.
-- (Loaded after returns.lua, whose note_day and add_returns it calls.)
--
-- KEYS[1]  = totals   hash  late:<day number>: days written after later ones
-- KEYS[2]  = returns  string: the day's count of pages by gap since their previous day
-- KEYS[3..] = last    the site's last-day buckets (page bucket b at KEYS[3 + b])
-- ARGV[1] = the day's number (days since 1970-01-01)
-- ARGV[2] = when the day's keys expire (Unix time)
-- ARGV[3] = 1 if the day held data before this import (its old paths may be gone), else 0
-- ARGV[4] = the longest gap the counts tell apart (longer ones count as none, at #0)
-- ARGV[5], ARGV[6], ... = page bucket, path; for each path of the day
-- Imports restore days oldest first; a day restored after a later one of its paths, or
-- over data it held, is marked late: ranges holding it are counted another way.

local day, expire_at, max_gap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[4])
local in_order = ARGV[3] == '0'
local by_gap = {}
for i = 5, #ARGV, 2 do
  if not note_day(KEYS[3 + tonumber(ARGV[i])], ARGV[i + 1], day, max_gap, by_gap) then
    in_order = false
  end
end
if add_returns(KEYS[2], by_gap) then
  redis.call('EXPIREAT', KEYS[2], expire_at)
end
if not in_order then
  redis.call('HSET', KEYS[1], 'late:' .. day, 1)
end
return 0
