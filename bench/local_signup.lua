-- wrk script: POST /api/v1/access/signup with a fresh email on every request.
-- Each wrk thread gets its own id in setup(), so threads never collide (no 409s).
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local counter = 0
local stamp = tostring(os.time())

request = function()
  counter = counter + 1
  local body = string.format(
    '{"email":"bench-%s-%d-%d@example.com","password":"benchmark-password"}',
    stamp, tid or 0, counter)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

local statuses = {}

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
