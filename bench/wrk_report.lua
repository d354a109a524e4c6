-- wrk_report.lua - make wrk's results machine-readable for c10k bench.
--
-- wrk prints a human summary; this script's done() writes the same numbers,
-- and more, as one JSON object to the file named by $WRK_REPORT:
--   requests, bytes, duration_us; errors: connect, read, write, status
--   (wrk counts a response with status >= 400 as a "status" error), timeout;
--   latency in microseconds: min, mean, stdev, max, a percentile spectrum
--   and a histogram with 10 buckets per decade; "recorded", the number of
--   latencies in the histogram.
-- The number of connections actually established is not visible to a wrk
-- script (there is no per-connection callback), so c10k bench counts them
-- itself during the window.
--
-- No request() or response() is defined on purpose: either one makes wrk
-- call into Lua for every request, and response() makes it buffer every body,
-- which would make the client, not the server, the bottleneck.
--
-- What wrk 4.1's latency object offers (src/script.c), and its traps:
--   latency[i]            NOT a count: __index only knows "min", "max",
--                         "mean", "stdev" and "percentile", and for anything
--                         else hands back the key itself, so latency[i] == i
--                         (an older version of this script summed those).
--   #latency              how many distinct latency values it holds;
--   latency(i)            value, count of the i-th distinct value (i from 1);
--                         each call scans the array from min, O(max - min);
--   latency:percentile(p) the value at rank round(p/100 * n + 0.5), also a
--                         scan from min. For p = 100 the rank is n + 1, past
--                         the last sample, and wrk returns 0: p100 is max.
-- Before done() runs, wrk "corrects" the latencies for coordinated omission
-- (stats_correct in src/stats.c): with e = duration_us / (requests /
-- connections), every sample n >= 2e adds synthetic samples at n - e, n - 2e,
-- ... while above e. wrk's printed percentiles, mean and stdev include them,
-- and so do "percentiles_us" and "latency_us" here (they are wrk's). The
-- histogram holds the measured latencies only: the correction is undone
-- exactly (measured[v] = corrected[v] - corrected[v + e] for v > e), which
-- needs the connection count, passed in $WRK_CONNECTIONS. "co_synthetic" is
-- how many samples wrk added.
-- A response slower than wrk's --timeout is counted as a timeout error and
-- not recorded, so the histogram sums to "recorded" = requests - (such
-- responses): to requests exactly when errors.timeout is 0.
-- Reading the distinct values costs a scan from min for each one: about
-- #latency * (mean - min) steps inside wrk, about a nanosecond each. A few
-- thousand values within tens of milliseconds take well under a second;
-- 10,000 connections spread latencies over hundreds of milliseconds and
-- would take minutes. Past HISTOGRAM_MAX_STEPS (predicted), or
-- HISTOGRAM_BUDGET_S of CPU or wall time (measured), the histogram is given
-- up and written as null with the reason, never truncated.

local HISTOGRAM_BUDGET_S = tonumber(os.getenv("WRK_REPORT_BUDGET_S") or "") or 5
local HISTOGRAM_MAX_STEPS = 2e9
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

-- Upper edges (whole microseconds) of the buckets that can hold lo..hi:
-- floor(10^(k/10)), ten per decade. A value v falls in the first bucket
-- whose edge is >= v (v is whole, so v <= 10^(k/10) iff v <= its floor).
local function edges(lo, hi)
   local out, k = {}, 0
   while 10 ^ (k / 10) < lo do
      k = k + 1
   end
   repeat
      out[#out + 1] = math.floor(10 ^ (k / 10))
      k = k + 1
   until out[#out] >= hi
   return out
end

-- The corrected counts of every distinct value: {value = count}, or nil
-- and why if that takes longer than the budget.
local function read_counts(latency)
   local n = #latency
   local steps = n * (latency.mean - latency.min)
   if steps > HISTOGRAM_MAX_STEPS then
      return nil, string.format("%d distinct latencies from %d to %d us: reading them from "
                                .. "wrk would take about %.0e steps", n, latency.min,
                                latency.max, steps)
   end
   local counts, cpu0, wall0 = {}, os.clock(), os.time()
   for i = 1, n do
      local v, c = latency(i)
      counts[v] = c
      if i % 256 == 0 and (os.clock() - cpu0 > HISTOGRAM_BUDGET_S
                           or os.time() - wall0 > HISTOGRAM_BUDGET_S) then
         return nil, string.format("reading %d distinct latencies from wrk took over %g s",
                                   n, HISTOGRAM_BUDGET_S)
      end
   end
   return counts
end

-- wrk's interval e (integer arithmetic as in wrk.c), or nil: no correction.
local function co_interval(summary, connections)
   local per_conn = math.floor(summary.requests / connections)
   if per_conn == 0 then
      return nil
   end
   return math.floor(summary.duration / per_conn)
end

-- Measured counts from corrected ones, and how many samples wrk added
-- (each measured v > e added one at v - k*e for every k >= 1 with
-- v - k*e > e, also below min where latency(i) cannot see them); nil if
-- the counts do not add up.
local function undo_correction(counts, e)
   local out, synthetic = {}, 0
   for v, c in pairs(counts) do
      local added = (e and v > e) and (counts[v + e] or 0) or 0
      if added > c then
         return nil, 0
      end
      if c > added then
         out[v] = c - added
         if e and v > e then
            synthetic = synthetic + (c - added) * math.floor((v - e - 1) / e)
         end
      end
   end
   return out, synthetic
end

local function bucketed(measured, lo, hi)
   local bounds, sums, values = edges(lo, hi), {}, {}
   for v in pairs(measured) do
      values[#values + 1] = v
   end
   table.sort(values)
   local b = 1
   for _, v in ipairs(values) do
      while v > bounds[b] do
         b = b + 1
      end
      sums[b] = (sums[b] or 0) + measured[v]
   end
   local out, total = {}, 0
   for i, edge in ipairs(bounds) do
      if sums[i] then
         out[#out + 1] = string.format("[%s,%s]", json_number(edge), json_number(sums[i]))
         total = total + sums[i]
      end
   end
   return "[" .. table.concat(out, ",") .. "]", total
end

-- histogram JSON, measured total, synthetic count, reason when null
local function histogram(summary, latency)
   local lo, hi = latency.min, latency.max
   if hi < lo or #latency == 0 then
      return "[]", 0, 0, nil
   end
   local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "")
   if not connections or connections < 1 then
      return "null", nil, nil, "WRK_CONNECTIONS is not set: wrk's correction cannot be undone"
   end
   local counts, why = read_counts(latency)
   if not counts then
      return "null", nil, nil, why
   end
   local measured, synthetic = undo_correction(counts, co_interval(summary, connections))
   if not measured then
      return "null", nil, nil, "wrk's coordinated-omission correction did not add up"
   end
   local hist, total = bucketed(measured, lo, hi)
   return hist, total, synthetic, nil
end

local function json_string(s)
   return s and string.format("%q", s) or "null"
end

function done(summary, latency, requests)
   local path = os.getenv("WRK_REPORT")
   if not path or path == "" then
      io.stderr:write("wrk_report.lua: WRK_REPORT is not set, no JSON written\n")
      return
   end
   local e = summary.errors
   local hist, recorded, synthetic, why = histogram(summary, latency)
   local pct = {}
   for _, p in ipairs(PERCENTILES) do
      local v = p == 100 and latency.max or latency:percentile(p)
      pct[#pct + 1] = string.format("[%s,%s]", json_number(p), json_number(v))
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
      '"histogram_us":' .. hist,
      '"recorded":' .. (recorded and json_number(recorded) or "null"),
      '"co_synthetic":' .. (synthetic and json_number(synthetic) or "null"),
      '"histogram_unavailable":' .. json_string(why),
   }
   local f = assert(io.open(path, "w"))
   f:write("{" .. table.concat(parts, ",") .. "}\n")
   f:close()
end
