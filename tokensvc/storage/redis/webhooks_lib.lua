-- Tenants' webhooks: the scheduling indexes, kept by every script that changes a delivery or an
-- endpoint. Per endpoint, `q:<endpoint>` holds its waiting deliveries (pending, not leased) by
-- the time they are due, and `run:<endpoint>` its leases; per tenant, `eq:<tenant>` holds its
-- endpoints that may get an attempt, by the time they may (the later of the oldest due, the next
-- probe of a failing one, and when it was last served); `tq` holds the tenants by the earliest
-- of theirs, or the time they were last served if later (`served`). An endpoint disabled, with
-- nothing waiting, or at its most attempts is out of `eq`; a tenant with no endpoint in `eq` is
-- out of `tq`.
local function wh_endpoint(prefix, endpoint_id, tenant, concurrency, served)
  local eq = prefix .. 'eq:' .. tenant
  local key = prefix .. 'ep:' .. endpoint_id
  local e = redis.call('HMGET', key, 'tenant', 'disabled_at', 'failing_since', 'probe_at',
                       'served_at')
  local head = redis.call('ZRANGE', prefix .. 'q:' .. endpoint_id, 0, 0, 'WITHSCORES')
  if not e[1] or (e[2] and e[2] ~= '') or #head == 0 then
    redis.call('ZREM', eq, endpoint_id)
    return
  end
  local most = tonumber(concurrency)
  if e[3] and e[3] ~= '' then most = 1 end
  if redis.call('ZCARD', prefix .. 'run:' .. endpoint_id) >= most then
    redis.call('ZREM', eq, endpoint_id)
    return
  end
  if served then
    redis.call('HSET', key, 'served_at', string.format('%d', served))
  else
    served = tonumber(e[5]) or 0
  end
  local score = math.max(tonumber(head[2]), tonumber(e[4]) or 0, served)
  redis.call('ZADD', eq, score, endpoint_id)
end

local function wh_tenant(prefix, tenant, served)
  local head = redis.call('ZRANGE', prefix .. 'eq:' .. tenant, 0, 0, 'WITHSCORES')
  if #head == 0 then
    redis.call('ZREM', prefix .. 'tq', tenant)
    return
  end
  if served then
    redis.call('HSET', prefix .. 'served', tenant, string.format('%d', served))
  else
    served = tonumber(redis.call('HGET', prefix .. 'served', tenant)) or 0
  end
  redis.call('ZADD', prefix .. 'tq', math.max(tonumber(head[2]), served), tenant)
end
