-- GET with a different user's access token on consecutive requests (wrk -s tokens.lua URL -- FILE THREADS).
--
-- FILE holds one access token per line (written by sessions.py seed); THREADS is wrk's -t. Each
-- thread takes every THREADS-th token (its own share, no token on two threads) and builds one
-- request per token in init(), so request() only hands out the next pre-built request: wrk
-- pays no string building per request. The tokens go round-robin, so consecutive requests of a
-- thread — spread by wrk over all its connections — carry different users' tokens, and a token
-- comes back only after every other token of the thread was used: with more tokens than the
-- service's verified-token memo and session L1 hold, every request misses both.
-- No response() hook: wrk's own counters (non-2xx) report a rejected token.

local created = 0

function setup(thread)
  created = created + 1
  thread:set("tid", created)
end

function init(args)
  local path, threads = args[1], tonumber(args[2])
  if path == nil or threads == nil or threads < 1 then
    error("usage: wrk -s tokens.lua URL -- TOKENS_FILE THREADS")
  end
  requests = {}
  local index = 0
  for line in io.lines(path) do
    if line ~= "" then
      if index % threads == tid - 1 then
        requests[#requests + 1] =
          wrk.format(nil, nil, { ["Cookie"] = 'access_token="' .. line .. '"' })
      end
      index = index + 1
    end
  end
  if #requests == 0 then
    error("no token for thread " .. tid .. " in " .. path)
  end
  -- Threads start at different points of their share (not all on their first token).
  position = (tid * 7919) % #requests
end

function request()
  position = position % #requests + 1
  return requests[position]
end
