-- wrk script: page views spread over many pages, visitors and referrers, so every hit
-- is counted (no dedupe or rate-limit short cuts) with all features on.
-- Visitors vary through X-Forwarded-For, which the app trusts from 127.0.0.1 here.
local counter = 0
local mode = os.getenv("BENCH_MODE") or "pixel"
-- Each wrk run of a benchmark gets its own number, so no run repeats the visitors of
-- another (a warm-up's views would come back as duplicates inside the dedupe window).
local run = tonumber(os.getenv("BENCH_RUN") or "0")
local started = 0

function setup(thread)
  started = started + 1
  thread:set("id", started)
end

request = function()
  counter = counter + 1
  local page = "/post/" .. (counter % 500)
  local visitor = "10." .. ((run * 2 + id) % 250) .. "." .. math.floor(counter / 250) % 250 .. "." .. counter % 250
  local headers = {
    ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    ["X-Forwarded-For"] = visitor,
  }
  local referrer = "https://ref" .. (counter % 20) .. ".example/"
  if mode == "beacon" then
    headers["Content-Type"] = "text/plain"
    local body = '{"site":"bench","path":"' .. page .. '","referrer":"' .. referrer .. '"}'
    return wrk.format("POST", "/api/v1/hit", headers, body)
  end
  return wrk.format("GET", "/hit/bench.gif?path=" .. page .. "&ref=" .. referrer, headers)
end
