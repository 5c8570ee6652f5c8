local delivery_key, due_key, pending_key, outcomes_key = unpack(KEYS)
local id, lease_ms, concurrency, slack_ms, prefix, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', delivery_key, 'status', 'next_attempt_at', 'lease_until',
                         'endpoint_id', 'attempts')
if not found[1] then return {'gone'} end
if found[1] ~= 'pending' then return {'done'} end
if tonumber(found[3]) > now then return {'leased', string.format('%d', found[3] - now)} end
local due = tonumber(found[2])
if due > now + tonumber(slack_ms) then return {'early', string.format('%d', due - now)} end
local endpoint = redis.call('HMGET', prefix .. 'ep:' .. found[4], 'url', 'secret',
                            'previous_secret', 'previous_until')
if not endpoint[1] then
  redis.call('HSET', delivery_key, 'status', 'failed', 'next_attempt_at', '',
             'last_error', 'the endpoint was deleted')
  redis.call('ZREM', due_key, id)
  redis.call('ZREM', pending_key, id)
  redis.call('HINCRBY', outcomes_key, 'failed', 1)
  return {'orphan'}
end
local running_key = prefix .. 'inflight:' .. found[4]
redis.call('ZREMRANGEBYSCORE', running_key, '-inf', now)
if redis.call('ZCARD', running_key) >= tonumber(concurrency) then return {'busy'} end
local lease = now + tonumber(lease_ms)
redis.call('ZADD', running_key, lease, id)
redis.call('PEXPIRE', running_key, tonumber(lease_ms))
redis.call('HSET', delivery_key, 'lease_until', string.format('%d', lease))
local previous = ''
if tonumber(endpoint[4]) > now then previous = endpoint[3] end
return {'go', redis.call('HGET', delivery_key, 'body'), endpoint[1], endpoint[2], previous,
        found[5]}
