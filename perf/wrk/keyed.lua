-- perf/scenarios.sh's name for post.lua (which sends `Authorization: Bearer $KEY` when KEY is
-- set and prints the WRKJSON line whose "requests" and "err_status" scenarios.sh reads).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "post.lua")
