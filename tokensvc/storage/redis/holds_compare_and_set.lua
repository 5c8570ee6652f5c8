local hold_key, lock_key = unpack(KEYS)
local seen_holder, seen_until, seen_gone, seen_pending, no_record, holder, duration_ms, pending,
      retention, mode, names_prefix, name, lock_token, shift = unpack(ARGV)
local now = clock(shift)
if lock_token ~= '' and redis.call('GET', lock_key) == lock_token then
  redis.call('DEL', lock_key)
end
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'gone', 'pending')
if no_record == '1' then
  if found[1] then return 0 end
elseif found[1] ~= seen_holder or found[2] ~= seen_until or found[3] ~= seen_gone
       or found[4] ~= seen_pending then
  return 0
end
if (mode == 'drop' or mode == 'transfer') and found[1] then
  redis.call('SREM', names_prefix .. found[1], name)
end
if mode == 'drop' then
  redis.call('DEL', hold_key)
  return 1
end
local till = now + tonumber(duration_ms)
if mode == 'gone' then
  till = math.max(till, tonumber(seen_until))
  redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', '1')
else
  redis.call('HSET', hold_key, 'holder', holder, 'until', string.format('%d', till), 'gone', '0',
             'pending', pending)
  keep_names(names_prefix .. holder, name, till + tonumber(retention))
end
redis.call('PEXPIREAT', hold_key, till + tonumber(retention))
return 1
