local name, for_ms, shift = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = clock(shift)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local until_ms = now + for_ms
local current = redis.call('ZSCORE', KEYS[1], name)
if not current or tonumber(current) < until_ms then
  redis.call('ZADD', KEYS[1], until_ms, name)
end
return 0
