-- wrk_report.lua - make wrk's results machine-readable for c10k bench.
--
-- wrk prints a human summary; this script's done() writes the same numbers,
-- and more, as one JSON object to the file named by $WRK_REPORT:
--   requests, bytes, duration_us; errors: connect, read, write, status
--   (wrk counts a response with status >= 400 as a "status" error), timeout;
--   latency in microseconds: min, mean, stdev, max, a percentile spectrum
--   and a histogram with 10 buckets per decade.
-- The number of connections actually established is not visible to a wrk
-- script (there is no per-connection callback), so c10k bench counts them
-- itself from /proc/net/tcp during the window.
--
-- No request() or response() is defined on purpose: either one makes wrk
-- call into Lua for every request, and response() makes it buffer every body,
-- which would make the client, not the server, the bottleneck.

local PERCENTILES = { 1, 5, 10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 95, 97.5,
                      99, 99.5, 99.9, 99.99, 100 }

local function json_number(v)
   if v ~= v or v == math.huge or v == -math.huge then
      return "null"
   end
   if v == math.floor(v) and math.abs(v) < 2^53 then
      return string.format("%d", v)
   end
   return string.format("%.6g", v)
end

-- Counts of latencies, grouped into buckets whose upper edges grow by
-- 10^(1/10): a log-scale histogram small enough to store for every cell.
-- latency[i] is the number of requests that took exactly i - 1 microseconds.
local function histogram(latency)
   local out, edge, count = {}, 1, 0
   local lo, hi = latency.min, latency.max
   if hi < lo then
      return out
   end
   while edge < lo do
      edge = edge * 10 ^ 0.1
   end
   for v = lo, hi do
      while v > edge do
         if count > 0 then
            out[#out + 1] = string.format("[%s,%d]", json_number(math.floor(edge)), count)
         end
         count = 0
         edge = edge * 10 ^ 0.1
      end
      count = count + latency[v + 1]
   end
   if count > 0 then
      out[#out + 1] = string.format("[%s,%d]", json_number(math.floor(edge)), count)
   end
   return out
end

function done(summary, latency, requests)
   local path = os.getenv("WRK_REPORT")
   if not path or path == "" then
      io.stderr:write("wrk_report.lua: WRK_REPORT is not set, no JSON written\n")
      return
   end
   local e = summary.errors
   local pct = {}
   for _, p in ipairs(PERCENTILES) do
      pct[#pct + 1] = string.format("[%s,%s]", json_number(p), json_number(latency:percentile(p)))
   end
   local parts = {
      string.format('"requests":%s', json_number(summary.requests)),
      string.format('"bytes":%s', json_number(summary.bytes)),
      string.format('"duration_us":%s', json_number(summary.duration)),
      string.format('"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
                    e.connect, e.read, e.write, e.status, e.timeout),
      string.format('"latency_us":{"min":%s,"mean":%s,"stdev":%s,"max":%s}',
                    json_number(latency.min), json_number(latency.mean),
                    json_number(latency.stdev), json_number(latency.max)),
      '"percentiles_us":[' .. table.concat(pct, ",") .. "]",
      '"histogram_us":[' .. table.concat(histogram(latency), ",") .. "]",
   }
   local f = assert(io.open(path, "w"))
   f:write("{" .. table.concat(parts, ",") .. "}\n")
   f:close()
end
