local delivery_key, due_key, pending_key, outcomes_key = unpack(KEYS)
local id, delivered, status_code, error, delay_ms, retention_ms, prefix, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', delivery_key, 'status', 'endpoint_id', 'deadline')
if not found[1] then return {'gone', ''} end
redis.call('ZREM', prefix .. 'inflight:' .. found[2], id)
redis.call('HINCRBY', delivery_key, 'attempts', 1)
redis.call('HSET', delivery_key, 'last_status_code', status_code, 'last_error', error,
           'lease_until', '0')
if found[1] ~= 'pending' then return {found[1], ''} end
local status, due = 'failed', ''
if delivered == '1' then
  status = 'delivered'
elseif now + tonumber(delay_ms) <= tonumber(found[3]) then
  status, due = 'pending', string.format('%d', now + tonumber(delay_ms))
end
redis.call('HSET', delivery_key, 'status', status, 'next_attempt_at', due)
if status == 'pending' then
  redis.call('ZADD', due_key, tonumber(due), id)
  redis.call('HINCRBY', outcomes_key, 'retried', 1)
else
  redis.call('ZREM', due_key, id)
  redis.call('ZREM', pending_key, id)
  redis.call('HINCRBY', outcomes_key, status, 1)
  redis.call('PEXPIRE', delivery_key, tonumber(retention_ms))
end
return {status, due}
