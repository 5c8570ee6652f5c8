-- KEYS: the delivery's hash, the pending index. ARGV: the tenant, the delivery id, the period,
-- the retention, the clock's shift, the key prefix, the endpoints' concurrency.
local delivery_key, pending_key = unpack(KEYS)
local tenant, id, period_ms, retention_ms, shift, prefix, concurrency = unpack(ARGV)
local found = redis.call('HMGET', delivery_key, 'tenant', 'created_at', 'endpoint_id',
                         'lease_until')
if found[1] ~= tenant then return 0 end
local now = clock(shift)
redis.call('HSET', delivery_key, 'status', 'pending', 'next_attempt_at', string.format('%d', now),
           'deadline', string.format('%d', now + tonumber(period_ms)))
redis.call('PEXPIRE', delivery_key, tonumber(period_ms) + tonumber(retention_ms))
redis.call('ZADD', pending_key, tonumber(found[2]), id)
if (tonumber(found[4]) or 0) <= now then
  redis.call('ZADD', prefix .. 'q:' .. found[3], now, id)
  wh_endpoint(prefix, found[3], tenant, concurrency, nil)
  wh_tenant(prefix, tenant, nil)
end
return 1
