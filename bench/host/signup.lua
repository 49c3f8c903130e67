-- POST /api/v1/access/signup with a unique user per request (wrk -s signup.lua URL -- NONCE DOMAIN).
--
-- Email: u-<nonce>-<thread>-<n>@<domain>; the nonce is unique per run and scenario, so every
-- row a run writes can be found (and deleted) afterwards. Each thread counts what it sent and
-- the status of every response; done() prints one summary line for the report generator:
--   IRONTRACK-SIGNUP {"sent":…,"responses":…,"statuses":{"201":…},"unanswered":[…]}
-- `unanswered` lists the emails sent without a 201 seen: requests still in flight when wrk
-- stopped (the server may still commit them) and requests answered with another status.
-- The password comes from IRONTRACK_BENCH_PASSWORD (a valid one is used when unset).

local threads = {}
local created = 0

function setup(thread)
  created = created + 1
  thread:set("tid", created)
  table.insert(threads, thread)
end

function init(args)
  nonce = args[1] or tostring(os.time())
  domain = args[2] or "bench.irontrack.example.com"
  password = os.getenv("IRONTRACK_BENCH_PASSWORD") or "bench-Passw0rd-not-secret"
  sent = 0
  responses = 0
  statuses = {}
  acked = {}
  -- wrk calls request() once in the first thread to check it builds a valid request before the
  -- run starts; that call is not sent and must not be counted.
  verifying = (tid == 1)
  headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
end

local function email(thread_id, n)
  return string.format("u-%s-%d-%d@%s", nonce, thread_id, n, domain)
end

function request()
  local n = 0
  if verifying then
    verifying = false
  else
    sent = sent + 1
    n = sent
  end
  local body = string.format('{"email":"%s","password":"%s"}', email(tid, n), password)
  return wrk.format("POST", wrk.path, headers, body)
end

function response(status, _, body)
  responses = responses + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status == 201 then
    local n = body and string.match(body, "%-(%d+)@")
    if n then
      acked[tonumber(n)] = true
    end
  end
end

local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(_, _, _)
  local total_sent, total_responses = 0, 0
  local totals = {}
  local unanswered = {}
  for _, thread in ipairs(threads) do
    local thread_id = thread:get("tid")
    local thread_sent = thread:get("sent") or 0
    local thread_acked = thread:get("acked") or {}
    total_sent = total_sent + thread_sent
    total_responses = total_responses + (thread:get("responses") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      totals[status] = (totals[status] or 0) + count
    end
    nonce = thread:get("nonce")
    domain = thread:get("domain")
    for n = 1, thread_sent do
      if not thread_acked[n] then
        table.insert(unanswered, json_string(email(thread_id, n)))
      end
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    table.insert(parts, string.format('"%s":%d', status, count))
  end
  table.sort(parts)
  io.write(string.format(
    'IRONTRACK-SIGNUP {"nonce":%s,"sent":%d,"responses":%d,"statuses":{%s},"unanswered":[%s]}\n',
    json_string(nonce or ""), total_sent, total_responses, table.concat(parts, ","),
    table.concat(unanswered, ",")))
end
