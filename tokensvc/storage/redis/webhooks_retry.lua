local delivery_key, due_key, pending_key = unpack(KEYS)
local tenant, id, period_ms, retention_ms, shift = unpack(ARGV)
local found = redis.call('HMGET', delivery_key, 'tenant', 'created_at')
if found[1] ~= tenant then return 0 end
local now = clock(shift)
redis.call('HSET', delivery_key, 'status', 'pending', 'next_attempt_at', string.format('%d', now),
           'deadline', string.format('%d', now + tonumber(period_ms)))
redis.call('PEXPIRE', delivery_key, tonumber(period_ms) + tonumber(retention_ms))
redis.call('ZADD', due_key, now, id)
redis.call('ZADD', pending_key, tonumber(found[2]), id)
return 1
