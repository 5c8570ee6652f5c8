-- KEYS[1] the ticket's key; ARGV: shift. The payload once (GET and DEL in one step), or false
-- for a ticket unknown, used or past its deadline on the storage's clock.
local value = redis.call('GET', KEYS[1])
if not value then return false end
redis.call('DEL', KEYS[1])
local bar = string.find(value, '|', 1, true)
if tonumber(string.sub(value, 1, bar - 1)) <= clock(ARGV[1]) then return false end
return string.sub(value, bar + 1)
