-- GET with the access token as a quoted cookie, as in the report's wrk command:
--   -H 'Cookie: access_token="TOKEN"'
-- The token comes from IRONTRACK_BENCH_TOKEN (a real login made by bench/playbook.yml), so it
-- never appears on a command line. No request()/response() hooks: wrk keeps its static,
-- pre-built request and its full speed.
local token = os.getenv("IRONTRACK_BENCH_TOKEN")
if token == nil or token == "" then
  error("IRONTRACK_BENCH_TOKEN is not set")
end
wrk.headers["Cookie"] = 'access_token="' .. token .. '"'
