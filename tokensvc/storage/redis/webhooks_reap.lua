-- KEYS: none. ARGV: the key prefix, the clock's shift, the most to put back, the endpoints'
-- concurrency. Deliveries whose lease ran out go back to their endpoint's queue, once each.
local prefix, shift, limit, concurrency = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = clock(shift)
local expired = redis.call('ZRANGEBYSCORE', prefix .. 'leases', '-inf', now, 'LIMIT', 0, limit)
local touched = {}
for _, id in ipairs(expired) do
  redis.call('ZREM', prefix .. 'leases', id)
  local delivery_key = prefix .. 'd:' .. id
  local d = redis.call('HMGET', delivery_key, 'status', 'endpoint_id', 'tenant', 'next_attempt_at')
  if d[1] then
    redis.call('HSET', delivery_key, 'lease_until', '0')
    redis.call('ZREM', prefix .. 'run:' .. d[2], id)
    if d[1] == 'pending' then
      redis.call('ZADD', prefix .. 'q:' .. d[2], tonumber(d[4]) or now, id)
    end
    touched[d[2]] = d[3]
  end
end
for endpoint_id, tenant in pairs(touched) do
  wh_endpoint(prefix, endpoint_id, tenant, concurrency, nil)
  wh_tenant(prefix, tenant, nil)
end
return #expired
