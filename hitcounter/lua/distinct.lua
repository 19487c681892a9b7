-- Count the distinct members of two parts' zsets: |A| + |B| - |A and B|, where the
-- overlap is the sum of ZINTERCARD over the pairs of keys (one of each part) that can
-- share members. ZINTERCARD walks the smaller key of a pair, so on a big site a range's
-- count costs in proportion to today's pages, on every read.
--
-- So each pair's overlap is kept in a memo, stamped with both keys' sizes. Members are
-- only ever added to these zsets while they exist (an import that replaces days drops
-- the memo), so while both sizes are unchanged the overlap is too: a read counts again
-- only the pairs that changed since the last read, typically a few of today's buckets.
--
-- KEYS[1]   = memo   hash "<key a> <key b>" -> "<size a>:<size b>:<overlap>"
-- KEYS[2..] = the parts' keys
-- ARGV[1]   = the memo's lifetime in seconds (refreshed whenever it is written)
-- ARGV[2..] = pairs of indices into KEYS: a, b, a, b, ...
-- Returns the number of distinct members.

local size = {}
local distinct = 0
for i = 2, #KEYS do
  size[i] = redis.call('ZCARD', KEYS[i])
  distinct = distinct + size[i]
end

-- Pairs with an empty key share nothing and are neither counted nor kept.
local pairs_asked, fields = {}, {}
for j = 2, #ARGV, 2 do
  local a, b = tonumber(ARGV[j]), tonumber(ARGV[j + 1])
  if size[a] > 0 and size[b] > 0 then
    pairs_asked[#pairs_asked + 1] = {a, b}
    fields[#fields + 1] = KEYS[a] .. ' ' .. KEYS[b]
  end
end
if #fields == 0 then
  return distinct
end

local kept = redis.call('HMGET', KEYS[1], unpack(fields))
local fresh = {}
for n, pair in ipairs(pairs_asked) do
  local a, b = pair[1], pair[2]
  local stamp = size[a] .. ':' .. size[b] .. ':'
  local memo = kept[n]
  local overlap
  if memo and string.sub(memo, 1, #stamp) == stamp then
    overlap = tonumber(string.sub(memo, #stamp + 1))
  else
    overlap = redis.call('ZINTERCARD', 2, KEYS[a], KEYS[b])
    fresh[#fresh + 1] = fields[n]
    fresh[#fresh + 1] = stamp .. overlap
  end
  distinct = distinct - overlap
end

if #fresh > 0 then
  -- Fields of ranges no longer read linger until the memo expires; this bounds them.
  if redis.call('HLEN', KEYS[1]) > 1000 then
    redis.call('DEL', KEYS[1])
  end
  redis.call('HSET', KEYS[1], unpack(fresh))
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return distinct
