-- Set some of a tenant's limits (and its status), making its record if there is none.
-- ARGV: shift, status ('' to leave it), reason, then name/value pairs ('' removes one).
local record_key, index_key = KEYS[1], KEYS[2]
local now = string.format('%d', clock(ARGV[1]))
if redis.call('HSETNX', record_key, 'created_at', now) == 1 then
  redis.call('HSET', record_key, 'status', 'active', 'reason', '')
end
redis.call('HSET', record_key, 'updated_at', now)
redis.call('SADD', index_key, ARGV[4])
if ARGV[2] ~= '' then redis.call('HSET', record_key, 'status', ARGV[2], 'reason', ARGV[3]) end
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', record_key, ARGV[i])
  else
    redis.call('HSET', record_key, ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', record_key)
