local owner, lease_ms, shift = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = clock(shift)
local current = redis.call('GET', KEYS[1])
if current then
  local bar = string.find(current, '|', 1, true)
  local holder, expires = string.sub(current, 1, bar - 1), tonumber(string.sub(current, bar + 1))
  if holder ~= owner and expires > now then return 0 end
end
redis.call('SET', KEYS[1], owner .. '|' .. string.format('%d', now + lease_ms), 'PX', lease_ms)
return 1
