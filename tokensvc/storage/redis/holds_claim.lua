local hold_key, removed_key, lock_key, continuity_key, recovering_key = unpack(KEYS)
local holder, hold_ms, slack, retention, names_prefix, name, identity, lock_token, lock_ms,
      shared, shift = unpack(ARGV)
hold_ms, slack, retention, lock_ms = tonumber(hold_ms), tonumber(slack), tonumber(retention),
                                     tonumber(lock_ms)
local now = clock(shift)
local record = redis.call('HMGET', continuity_key, 'epoch', 'run_id', 'evicted')
if not record[1] then return {'check'} end
local removed = '0'
if identity ~= '' then
  local until_removed = redis.call('HGET', removed_key, identity)
  if until_removed and tonumber(until_removed) > now then removed = '1' end
end
local found = redis.call('HMGET', hold_key, 'holder', 'until', 'gone', 'pending')
local held_by, till, gone, pending = found[1], found[2], found[3], found[4]
if not held_by then
  -- A name with no record: the store must show it forgot nothing before the name is given.
  local facts = storage_facts({'server', 'stats', 'memory'})
  if facts.policy ~= 'noeviction' then return {'unsafe', facts.policy} end
  if facts.run_id ~= record[2] or facts.evicted > tonumber(record[3] or '0') then
    return {'check'}
  end
  if shared == '1' then
    local recovering_until = tonumber(redis.call('GET', recovering_key) or '0')
    if recovering_until > now then
      return {'recovering', string.format('%d', recovering_until - now)}
    end
  end
  held_by, till, gone, pending = holder, now + hold_ms + slack, '0', '1'
  redis.call('HSET', hold_key, 'holder', holder, 'until', string.format('%d', till),
             'gone', '0', 'pending', '1')
  redis.call('PEXPIREAT', hold_key, till + retention)
  keep_names(names_prefix .. holder, name, till + retention)
elseif held_by == holder then
  till = tonumber(till)
  if till < now + hold_ms or gone == '1' then
    till = math.max(till, now + hold_ms + slack)
    gone = '0'
    redis.call('HSET', hold_key, 'until', string.format('%d', till), 'gone', '0')
    redis.call('PEXPIREAT', hold_key, till + retention)
    keep_names(names_prefix .. holder, name, till + retention)
  end
end
local locked, wait = '', 0
if held_by == holder and pending == '1' and lock_ms > 0 then
  if redis.call('SET', lock_key, lock_token, 'NX', 'PX', lock_ms) then
    locked = lock_token
  else
    wait = redis.call('PTTL', lock_key)
  end
end
return {'hold', held_by, string.format('%d', till), gone, pending, removed,
        string.format('%d', now), locked, tostring(wait)}
