local endpoints_key, endpoint_key = KEYS[1], KEYS[2]
local most, id, tenant, url, events, description, secret, shift = unpack(ARGV)
if redis.call('SCARD', endpoints_key) >= tonumber(most) then return -1 end
local now = clock(shift)
redis.call('HSET', endpoint_key, 'id', id, 'tenant', tenant, 'url', url, 'events', events,
           'description', description, 'created_at', string.format('%d', now), 'secret', secret,
           'previous_secret', '', 'previous_until', '0')
redis.call('SADD', endpoints_key, id)
return now
