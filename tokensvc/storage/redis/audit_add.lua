-- Keep one audit entry at the storage's now in the trail of every tenant and in its own
-- tenant's; entries past the retention go.
-- KEYS: the sequence, then the trails. ARGV: shift, retention, the entry's text without its
-- time. Each member starts with a sequence number, so the entries of one ms keep their order.
local now = clock(ARGV[1])
local retention = tonumber(ARGV[2])
local member = string.format('%016d', redis.call('INCR', KEYS[1])) .. ARGV[3]
for i = 2, #KEYS do
  local key = KEYS[i]
  redis.call('ZADD', key, now, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - retention)
  redis.call('PEXPIRE', key, retention)
end
return string.format('%d', now)
