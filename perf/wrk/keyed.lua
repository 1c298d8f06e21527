-- wrk script: POST $BODY_FILE as JSON with `Authorization: Bearer $KEY` when KEY is set, and
-- print one machine-readable summary line (prefix WRKJSON) at the end.
local path = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("KEY")
if key and key ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
   io.write(string.format('WRKJSON {"requests":%d,"err_status":%d}\n', summary.requests, summary.errors.status))
end
