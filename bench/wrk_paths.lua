-- wrk_paths.lua - wrk walks a list of paths (the cold-cache profile).
--
-- $WRK_PATHS names a file with one path per line (the format of
-- `c10k load --paths`); each request takes the next path, wrapping around at
-- the end. With several wrk threads, thread k starts k/N of the way into the
-- list ($WRK_THREADS says N), so the threads do not ask for the same files
-- in step. done() is
-- wrk_report.lua's ($WRK_REPORT_LUA), so the results are the same JSON.
--
-- Defining request() makes wrk call into Lua for every request, which
-- wrk_report.lua avoids on purpose: it costs the client a few microseconds
-- per request. A cold-cache server serves hundreds to a few thousand
-- requests per second, so that is far from the bottleneck here.

dofile(os.getenv("WRK_REPORT_LUA"))

local threads = 0

function setup(thread)
   thread:set("index", threads)
   threads = threads + 1
end

local paths = {}
local at = 0

function init(args)
   for line in io.lines(os.getenv("WRK_PATHS")) do
      if line ~= "" then
         paths[#paths + 1] = line
      end
   end
   if #paths == 0 then
      error("wrk_paths.lua: no paths in " .. tostring(os.getenv("WRK_PATHS")))
   end
   local n = tonumber(os.getenv("WRK_THREADS") or "1") or 1
   at = math.floor((tonumber(wrk.thread:get("index")) or 0) * #paths / n)
end

function request()
   at = at % #paths + 1
   return wrk.format(nil, paths[at])
end
