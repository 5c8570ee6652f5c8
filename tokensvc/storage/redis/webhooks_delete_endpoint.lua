if redis.call('HGET', KEYS[2], 'tenant') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[2])
return 1
