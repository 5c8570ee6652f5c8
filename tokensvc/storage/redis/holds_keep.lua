local hold_key = KEYS[1]
local grace_ms, gone, retention, names_prefix, name, shift = unpack(ARGV)
local now = clock(shift)
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'pending')
if not found[1] then return {} end
local till = math.max(tonumber(found[2]), now + tonumber(grace_ms))
redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', gone)
redis.call('PEXPIREAT', hold_key, till + tonumber(retention))
keep_names(names_prefix .. found[1], name, till + tonumber(retention))
return {found[1], string.format('%d', till), found[3], string.format('%d', now)}
