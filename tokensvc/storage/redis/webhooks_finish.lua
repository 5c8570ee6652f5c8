-- KEYS: none (every key is named from the prefix).
-- ARGV: the key prefix, the clock's shift, the retention, the endpoints' concurrency, how long
-- an endpoint fails before it is disabled, the reason it is then given, then per outcome its
-- delivery id, endpoint id, kind (delivered, failed, released), status code, error and delay.
local prefix, shift, retention_ms, concurrency = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local disable_after, reason = tonumber(ARGV[5]), ARGV[6]
local now = clock(shift)
local results = {}
local touched = {}
for i = 7, #ARGV, 6 do
  local id, endpoint_id, kind, status_code, error, delay = unpack(ARGV, i, i + 5)
  delay = tonumber(delay)
  local delivery_key = prefix .. 'd:' .. id
  local endpoint_key = prefix .. 'ep:' .. endpoint_id
  redis.call('ZREM', prefix .. 'leases', id)
  redis.call('ZREM', prefix .. 'run:' .. endpoint_id, id)
  local tenant = redis.call('HGET', endpoint_key, 'tenant')
  if tenant then touched[endpoint_id] = tenant end
  local found = redis.call('HMGET', delivery_key, 'status', 'deadline', 'next_attempt_at')
  if not found[1] then
    results[#results + 1] = {id, 'gone', ''}
  elseif kind == 'released' then
    redis.call('HSET', delivery_key, 'lease_until', '0')
    if found[1] == 'pending' and tenant then
      redis.call('ZADD', prefix .. 'q:' .. endpoint_id, tonumber(found[3]) or now, id)
    end
    results[#results + 1] = {id, found[1], ''}
  else
    local delivered = kind == 'delivered'
    local last_error = error
    if delivered then last_error = '' end
    redis.call('HINCRBY', delivery_key, 'attempts', 1)
    redis.call('HSET', delivery_key, 'last_status_code', status_code, 'last_error', last_error,
               'lease_until', '0')
    local disabled = ''
    if tenant and delivered then
      redis.call('HSET', endpoint_key, 'failing_since', '', 'failures', '0', 'probe_at', '0')
    elseif tenant then
      local e = redis.call('HMGET', endpoint_key, 'failing_since', 'disabled_at')
      local since = tonumber(e[1]) or now
      redis.call('HSET', endpoint_key, 'failing_since', string.format('%d', since),
                 'probe_at', string.format('%d', now + delay))
      redis.call('HINCRBY', endpoint_key, 'failures', 1)
      if (not e[2] or e[2] == '') and now - since >= disable_after then
        redis.call('HSET', endpoint_key, 'disabled_at', string.format('%d', now),
                   'disabled_reason', reason .. ' (last: ' .. error .. ')')
        disabled = '1'
        for _, waiting in ipairs(redis.call('ZRANGE', prefix .. 'q:' .. endpoint_id, 0, -1)) do
          redis.call('PERSIST', prefix .. 'd:' .. waiting)
        end
      end
    end
    if found[1] ~= 'pending' then
      results[#results + 1] = {id, found[1], disabled}
    else
      local status, due = 'failed', ''
      if delivered then
        status = 'delivered'
      elseif tenant and now + delay <= tonumber(found[2]) then
        status, due = 'pending', string.format('%d', now + delay)
      end
      redis.call('HSET', delivery_key, 'status', status, 'next_attempt_at', due)
      if status == 'pending' then
        redis.call('ZADD', prefix .. 'q:' .. endpoint_id, now + delay, id)
        if disabled == '1' then redis.call('PERSIST', delivery_key) end
        redis.call('HINCRBY', prefix .. 'outcomes', 'retried', 1)
      else
        redis.call('ZREM', prefix .. 'pending', id)
        redis.call('HINCRBY', prefix .. 'outcomes', status, 1)
        redis.call('PEXPIRE', delivery_key, retention_ms)
      end
      results[#results + 1] = {id, status, disabled}
    end
  end
end
for endpoint_id, tenant in pairs(touched) do
  wh_endpoint(prefix, endpoint_id, tenant, concurrency, nil)
  wh_tenant(prefix, tenant, nil)
end
return results
