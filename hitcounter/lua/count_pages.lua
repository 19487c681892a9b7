-- Count the pages a site keeps (the fields of all its raw buckets) into totals.pages.
-- Imports run it after writing pages; hits.lua keeps the count as it adds them.
--
-- KEYS[1] = totals  hash  field pages: the count
-- KEYS[2..] = raw   every raw bucket of the site (hash path -> raw hits)
-- Returns the count.

local n = 0
for i = 2, #KEYS do
  n = n + redis.call('HLEN', KEYS[i])
end
redis.call('HSET', KEYS[1], 'pages', n)
return n
