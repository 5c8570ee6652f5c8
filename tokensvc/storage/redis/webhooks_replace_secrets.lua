-- KEYS: the endpoint's hash. ARGV: the old secret and previous secret, the new ones.
local found = redis.call('HMGET', KEYS[1], 'secret', 'previous_secret')
if found[1] ~= ARGV[1] or (found[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'secret', ARGV[3], 'previous_secret', ARGV[4])
return 1
