-- wrk script: POST pre-signed LiveKit webhooks, each line of a file used once.
-- Environment: BENCH_EVENTS (a file of `Authorization<TAB>body` lines), BENCH_THREADS (wrk's -t:
-- each thread posts its own contiguous share of the lines). A thread that runs out of lines
-- starts its share again and counts the lines it posts twice ("reused": duplicates, which the
-- service drops cheaply, so a run with any measured less than it says).

local path = os.getenv("BENCH_EVENTS")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  failures = 0
  reused = 0
  local lines = {}
  for line in io.lines(path) do table.insert(lines, line) end
  local share = math.floor(#lines / thread_count)
  local first = (id - 1) * share
  prepared = {}
  wrapped = false
  for number = first + 1, first + share do
    local auth, body = lines[number]:match("^([^\t]*)\t(.*)$")
    table.insert(prepared, wrk.format("POST", "/livekit/webhook", {
      ["Content-Type"] = "application/webhook+json",
      ["Authorization"] = auth,
    }, body))
  end
  next_request = 0
end

function request()
  next_request = next_request + 1
  if next_request > #prepared then
    next_request = 1
    wrapped = true
  end
  if wrapped then reused = reused + 1 end
  return prepared[next_request]
end

function response(status, headers, body)
  if status < 200 or status > 299 then failures = failures + 1 end
end

function done(summary, latency, requests)
  local failed, posted_twice = 0, 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
    posted_twice = posted_twice + thread:get("reused")
  end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"failed":%d,"socket_errors":%d,"reused":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), failed,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    posted_twice))
end
