-- wrk script: POST /livekit/token, optionally with a bearer token, to a fixed or fresh room.
-- Environment: BENCH_AUTH (Authorization value, or empty), BENCH_ROOM (room name, or empty for
-- a new room on every request), BENCH_NONCE (unique per wrk run, so fresh rooms never repeat),
-- BENCH_CLOSE (non-empty: "Connection: close", one connection per request, as curl makes them).

local auth = os.getenv("BENCH_AUTH") or ""
local fixed_room = os.getenv("BENCH_ROOM") or ""
local nonce = os.getenv("BENCH_NONCE") or "0"
local close = (os.getenv("BENCH_CLOSE") or "") ~= ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  sent = 0
  failures = 0
  headers = { ["Content-Type"] = "application/json" }
  if auth ~= "" then headers["Authorization"] = auth end
  if close then headers["Connection"] = "close" end
end

function request()
  sent = sent + 1
  local room = fixed_room
  if room == "" then room = string.format("bench-%s-%d-%d", nonce, id, sent) end
  local body = string.format(
    '{"room_name":"%s","participant_name":"Bench User","participant_identity":"bench-%d-%d"}',
    room, id, sent)
  return wrk.format("POST", "/livekit/token", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failures") end
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"failed":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), failed,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
