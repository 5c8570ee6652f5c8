local kind, tenant, name, room_sid, room_started, at, psid, identity, joined, retention,
      max_participants, max_rooms, prefix, shift = unpack(ARGV, 1, 14)
room_started, at, joined, retention = tonumber(room_started), tonumber(at), tonumber(joined),
                                      tonumber(retention)
local now = clock(shift)
local room_key = prefix .. 'usage:room:' .. room_sid
local found = redis.call('HMGET', room_key, 'tenant', 'started', 'finished', 'lost')
local first_sight = not found[1]
if found[1] then tenant = found[1] end
if tenant == '' then return 'ignored' end
local started = room_started
if joined > 0 and joined < started then started = joined end
if found[2] and tonumber(found[2]) < started then started = tonumber(found[2]) end
local finished = found[3]
if (kind == 'room_finished' or kind == 'room_lost') and not finished then
  finished = string.format('%d', at)
  redis.call('HSET', room_key, 'finished', finished)
  if kind == 'room_lost' then redis.call('HSET', room_key, 'lost', '1') end
elseif kind == 'room_finished' then
  redis.call('HDEL', room_key, 'lost')  -- LiveKit's own end: final, whenever it comes
elseif found[4] and finished and (kind == 'participant_joined' or kind == 'room_started')
    and at > tonumber(finished) then
  -- Alive again after an end the reconciliation inferred (a re-hosted room): the life goes on
  -- without the gap, and its sessions before the gap ended with it.
  redis.call('HINCRBY', room_key, 'lost_ms', string.format('%d', at - tonumber(finished)))
  for _, member in ipairs(redis.call('SMEMBERS', prefix .. 'usage:sessions:' .. room_sid)) do
    local member_key = prefix .. 'usage:session:' .. member
    if redis.call('EXISTS', member_key) == 1 and not redis.call('HGET', member_key, 'left') then
      redis.call('HSET', member_key, 'left', finished)
    end
  end
  redis.call('HDEL', room_key, 'finished', 'lost')
  finished = nil
end
redis.call('HSET', room_key, 'tenant', tenant, 'name', name, 'started',
           string.format('%d', started))
redis.call('PEXPIRE', room_key, retention)
local rooms_key = prefix .. 'usage:rooms:' .. tenant
redis.call('ZADD', rooms_key, started, room_sid)
redis.call('ZREMRANGEBYSCORE', rooms_key, '-inf', now - retention)
redis.call('PEXPIRE', rooms_key, retention)
redis.call('ZADD', prefix .. 'usage:tenants', now, tenant)
redis.call('ZREMRANGEBYSCORE', prefix .. 'usage:tenants', '-inf', now - retention)
local live_key = quota_key(prefix, 'live', tenant, name)
local seats_key = quota_key(prefix, 'seats', tenant, name)
if not finished then
  redis.call('SADD', prefix .. 'usage:live', room_sid)  -- what the reconciliation reads
  if first_sight and max_rooms ~= '' then
    local count = 0
    for i = 15, #ARGV do
      if ARGV[i] ~= name and in_use(prefix, tenant, ARGV[i], now) then count = count + 1 end
    end
    if count >= tonumber(max_rooms) then
      redis.call('HSET', live_key, room_sid, '1')
      redis.call('PEXPIRE', live_key, retention)
      return 'over_rooms'
    end
  end
  redis.call('HSET', live_key, room_sid, '1')
  redis.call('PEXPIRE', live_key, retention)
  redis.call('DEL', quota_key(prefix, 'reserved', tenant, name))  -- live now: no reservation
else
  redis.call('SREM', prefix .. 'usage:live', room_sid)
  redis.call('DEL', prefix .. 'usage:open:' .. room_sid)
  redis.call('HDEL', live_key, room_sid)
  local entries = redis.call('HGETALL', seats_key)
  for i = 1, #entries, 2 do
    if string.sub(entries[i + 1], 1, #room_sid + 1) == room_sid .. '|' then
      redis.call('HDEL', seats_key, entries[i])
    end
  end
end
if psid == '' then return 'metered' end
local session_key = prefix .. 'usage:session:' .. psid
local session = redis.call('HMGET', session_key, 'joined', 'left', 'seated', 'refused')
redis.call('HSET', session_key, 'room', room_sid, 'identity', identity)
redis.call('PEXPIRE', session_key, retention)
redis.call('SADD', prefix .. 'usage:sessions:' .. room_sid, psid)
redis.call('PEXPIRE', prefix .. 'usage:sessions:' .. room_sid, retention)
if joined > 0 and (not session[1] or joined < tonumber(session[1])) then
  redis.call('HSET', session_key, 'joined', string.format('%d', joined))
end
local left = session[2]
if kind == 'participant_left' then
  if not left then
    left = string.format('%d', at)
    redis.call('HSET', session_key, 'left', left)
  end
  redis.call('HDEL', seats_key, psid)
end
local open_key = prefix .. 'usage:open:' .. room_sid  -- what live_lives reads
if left or finished then
  redis.call('SREM', open_key, psid)
else
  redis.call('SADD', open_key, psid)
  redis.call('PEXPIRE', open_key, retention)
end
if kind ~= 'participant_joined' or left or finished or session[3] or session[4] then
  return 'metered'
end
local limit = max_participants
if limit ~= '' and seated_others(seats_key, identity) >= tonumber(limit) then
  redis.call('HSET', session_key, 'refused', '1')
  return 'over_quota'
end
redis.call('HSET', session_key, 'seated', '1')
redis.call('HSET', seats_key, psid, room_sid .. '|' .. identity)
redis.call('PEXPIRE', seats_key, retention)
return 'metered'
