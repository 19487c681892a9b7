-- The returns index's bookkeeping, shared by hits.lua and restore_returns.lua: Store
-- loads each of them with this file in front (Redis scripts cannot load one another).
--
-- A path is in a range's distinct pages once: on the range's first day, or on a later
-- day it came back to after none of the range's days before; so each day counts its
-- paths by the gap since their previous day (Store._distinct_pages reads the counts).

-- Note `day` (a day number) as the path's latest, and count it in `by_gap` (gap -> pages)
-- by the days since the path's previous one (0: none, or more than `max_gap`). False,
-- and nothing noted, when the path already has this day or a later one: the day comes
-- late, and ranges holding it can no longer be counted from the index.
local function note_day(last_key, path, day, max_gap, by_gap)
  local last = tonumber(redis.call('HGET', last_key, path) or '-1')
  if last >= day then return false end
  redis.call('HSET', last_key, path, day)
  local gap = day - last
  if last < 0 or gap > max_gap then gap = 0 end
  by_gap[gap] = (by_gap[gap] or 0) + 1
  return true
end

-- Add `by_gap` to the day's counters (u32 at #gap) with one command; false if empty.
local function add_returns(returns_key, by_gap)
  local increments = {}
  for gap, pages in pairs(by_gap) do
    local at = #increments
    increments[at + 1], increments[at + 2] = 'INCRBY', 'u32'
    increments[at + 3], increments[at + 4] = '#' .. gap, pages
  end
  if #increments == 0 then return false end
  redis.call('BITFIELD', returns_key, unpack(increments))
  return true
end

