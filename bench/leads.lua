-- wrk script for the durable-ACK stage: replays distinct, signed lead deliveries that bench/ack.py
-- wrote per thread (several tenants and sources; HMAC signatures need a crypto library LuaJIT lacks,
-- so Python signs them just before the run), and records each answer's status and lead id.
--   wrk -t T -c C -d D -s bench/leads.lua http://127.0.0.1:PORT -- DIR
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local dir = args[1]
  local f = assert(io.open(dir .. "/requests-" .. tid .. ".bin", "rb"))
  local data = f:read("*a")
  f:close()
  reqs = {}
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local n = tonumber(data:sub(pos, nl - 1))
    reqs[#reqs + 1] = data:sub(nl + 1, nl + n)
    pos = nl + n + 1
  end
  idx = 0
  wrapped = 0
  out = assert(io.open(dir .. "/answers-" .. tid .. ".txt", "w"))
  -- wrk never closes a thread's Lua state: line buffering keeps every answer on disk.
  out:setvbuf("line")
end

function request()
  idx = idx + 1
  if idx > #reqs then
    -- Out of distinct leads: repeat them (the answers are then duplicates, counted apart).
    idx = 1
    wrapped = wrapped + 1
  end
  return reqs[idx]
end

function response(status, headers, body)
  local lead = body and body:match('"lead_id":"([^"]+)"') or "-"
  out:write(status, " ", lead, "\n")
end

function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "timeouts": %d, "non_2xx_3xx": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
