local current = redis.call('HGET', KEYS[1], ARGV[1])
if current and string.sub(current, 1, 2) == 'r:' then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
