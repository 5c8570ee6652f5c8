-- KEYS: the endpoint's hash. ARGV: the tenant, the endpoint id, 1 to enable or 0 to disable,
-- the reason, the period, the retention, the key prefix, the endpoints' concurrency, the shift.
local tenant, endpoint_id, enable, reason, period_ms, retention_ms, prefix, concurrency, shift =
  unpack(ARGV)
local key = KEYS[1]
if redis.call('HGET', key, 'tenant') ~= tenant then return 0 end
local now = clock(shift)
local was = redis.call('HGET', key, 'disabled_at')
if enable == '0' then
  if not was or was == '' then
    redis.call('HSET', key, 'disabled_at', string.format('%d', now), 'disabled_reason', reason)
  end
else
  redis.call('HSET', key, 'disabled_at', '', 'disabled_reason', '', 'failing_since', '',
             'failures', '0', 'probe_at', '0')
  if was and was ~= '' then
    local queue = prefix .. 'q:' .. endpoint_id
    for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
      local delivery_key = prefix .. 'd:' .. id
      local created = redis.call('HGET', delivery_key, 'created_at')
      if created then
        redis.call('HSET', delivery_key, 'next_attempt_at', string.format('%d', now),
                   'deadline', string.format('%d', now + tonumber(period_ms)))
        redis.call('PEXPIRE', delivery_key, tonumber(period_ms) + tonumber(retention_ms))
        redis.call('ZADD', queue, tonumber(created), id)
      else
        redis.call('ZREM', queue, id)
      end
    end
  end
end
wh_endpoint(prefix, endpoint_id, tenant, concurrency, nil)
wh_tenant(prefix, tenant, nil)
return 1
