-- wrk script for perf/cache.sh: POST chat requests of which HIT_PERCENT in 100 repeat one
-- prompt (cache hits once it is kept) and the rest carry a prompt never sent before (misses).
-- With CACHE_HEADER set, every request sends it as `x-ringgate-cache` (`no-store`: the
-- no-cache baseline through the same script). The same per-request Lua runs in every case,
-- so the cases differ only in what the gateway does. Prints a WRKJSON line like post.lua.
local hit_percent = tonumber(os.getenv("HIT_PERCENT") or "50")
local header = os.getenv("CACHE_HEADER")
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))

local function body(prompt)
   return '{"model":"mock/gpt-4o-mini","max_tokens":32,"messages":[{"role":"user","content":"'
      .. prompt .. '"}]}'
end

local repeated = body("the same question every time")

function request()
   counter = counter + 1
   local headers = { ["Content-Type"] = "application/json" }
   if header and header ~= "" then
      headers["x-ringgate-cache"] = header
   end
   local b
   if (counter % 100) < hit_percent then
      b = repeated
   else
      b = body("a new question " .. thread_tag .. " " .. counter)
   end
   return wrk.format("POST", nil, headers, b)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"err_status":%d,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
      summary.requests, summary.duration, e.status,
      latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
