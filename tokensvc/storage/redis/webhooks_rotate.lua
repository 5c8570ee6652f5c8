local found = redis.call('HMGET', KEYS[1], 'tenant', 'secret')
local tenant, secret, keep_ms, shift = unpack(ARGV)
if found[1] ~= tenant then return 0 end
redis.call('HSET', KEYS[1], 'previous_secret', found[2],
           'previous_until', string.format('%d', clock(shift) + tonumber(keep_ms)),
           'secret', secret)
return 1
