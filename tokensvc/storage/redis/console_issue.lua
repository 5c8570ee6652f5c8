-- KEYS[1] the ticket's key; ARGV: shift, payload, ttl_ms. The value is "<expires>|<payload>",
-- its deadline on the storage's clock; Redis drops the key a minute after it.
local expires = clock(ARGV[1]) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], string.format('%d', expires) .. '|' .. ARGV[2], 'PX', tonumber(ARGV[3]) + 60000)
return 1
