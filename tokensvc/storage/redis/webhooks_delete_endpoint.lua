-- KEYS: the tenant's endpoint set, the endpoint's hash. ARGV: the tenant, the endpoint id, the
-- key prefix, the retention, the error its waiting deliveries fail with.
local tenant, endpoint_id, prefix, retention_ms, error = unpack(ARGV)
if redis.call('HGET', KEYS[2], 'tenant') ~= tenant then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], endpoint_id)
local queue = prefix .. 'q:' .. endpoint_id
for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
  local delivery_key = prefix .. 'd:' .. id
  if redis.call('HGET', delivery_key, 'status') == 'pending' then
    redis.call('HSET', delivery_key, 'status', 'failed', 'next_attempt_at', '',
               'last_error', error)
    redis.call('ZREM', prefix .. 'pending', id)
    redis.call('HINCRBY', prefix .. 'outcomes', 'failed', 1)
    redis.call('PEXPIRE', delivery_key, tonumber(retention_ms))
  end
end
redis.call('DEL', queue)
redis.call('ZREM', prefix .. 'eq:' .. tenant, endpoint_id)
wh_tenant(prefix, tenant, nil)
return 1
