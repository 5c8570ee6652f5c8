local hold_key, lock_key = unpack(KEYS)
local holder, lock_token = unpack(ARGV)
if redis.call('HGET', hold_key, 'holder') == holder then
  redis.call('HSET', hold_key, 'pending', '0')
end
if lock_token ~= '' and redis.call('GET', lock_key) == lock_token then
  redis.call('DEL', lock_key)
end
return 0
