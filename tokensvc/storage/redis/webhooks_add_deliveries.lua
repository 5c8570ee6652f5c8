-- KEYS: the pending index, then per delivery its hash and its tenant's listing.
-- ARGV: the period, the retention, how many are listed per tenant, the clock's shift, the key
-- prefix, the endpoints' concurrency, then per delivery its id, tenant, endpoint id, event id,
-- type and body.
local pending_key = KEYS[1]
local period_ms, retention_ms, listed, shift = tonumber(ARGV[1]), tonumber(ARGV[2]),
                                                tonumber(ARGV[3]), ARGV[4]
local prefix, concurrency = ARGV[5], ARGV[6]
local now = clock(shift)
local touched = {}
for i = 0, (#KEYS - 1) / 2 - 1 do
  local delivery_key, listed_key = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local id, tenant, endpoint_id, event_id, kind, body = unpack(ARGV, 7 + 6 * i, 12 + 6 * i)
  redis.call('HSET', delivery_key, 'id', id, 'tenant', tenant, 'endpoint_id', endpoint_id,
             'event_id', event_id, 'type', kind, 'status', 'pending', 'attempts', '0',
             'last_status_code', '', 'last_error', '',
             'next_attempt_at', string.format('%d', now), 'created_at', string.format('%d', now),
             'deadline', string.format('%d', now + period_ms), 'lease_until', '0', 'body', body)
  redis.call('PEXPIRE', delivery_key, period_ms + retention_ms)
  redis.call('ZADD', listed_key, now, id)
  local extra = redis.call('ZCARD', listed_key) - listed
  if extra > 0 then redis.call('ZREMRANGEBYRANK', listed_key, 0, extra - 1) end
  redis.call('PEXPIRE', listed_key, period_ms + retention_ms)
  redis.call('ZADD', pending_key, now, id)
  redis.call('ZADD', prefix .. 'q:' .. endpoint_id, now, id)
  touched[endpoint_id] = tenant
end
for endpoint_id, tenant in pairs(touched) do
  wh_endpoint(prefix, endpoint_id, tenant, concurrency, nil)
  wh_tenant(prefix, tenant, nil)
end
return 1
