local removed_key = KEYS[1]
local identity, for_ms, shift = unpack(ARGV)
local till = math.max(tonumber(redis.call('HGET', removed_key, identity) or '0'),
                      clock(shift) + tonumber(for_ms))
redis.call('HSET', removed_key, identity, string.format('%d', till))
if redis.call('PEXPIRETIME', removed_key) < till then redis.call('PEXPIREAT', removed_key, till) end
return 0
