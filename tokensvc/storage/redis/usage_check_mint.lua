local live_key, seats_key, limits_key = unpack(KEYS)
local name, identity, max_rooms, max_participants, reserve_ms, retention, shift = unpack(ARGV)
local now = clock(shift)
local stored = redis.call('HMGET', limits_key, 'max_rooms', 'max_participants')
if stored[1] ~= max_rooms or stored[2] ~= max_participants then
  redis.call('HSET', limits_key, 'max_rooms', max_rooms, 'max_participants', max_participants)
end
redis.call('PEXPIRE', limits_key, retention)
if max_participants ~= '' then
  local others = seated_others(seats_key, identity)
  if others >= tonumber(max_participants) then return {'max_participants', others, 0} end
end
if max_rooms == '' then return {'', 0, 0} end
local until_text = string.format('%d', now + tonumber(reserve_ms))
local current = redis.call('HGET', live_key, name)
if current and (string.sub(current, 1, 2) == 's:' or tonumber(string.sub(current, 3)) > now) then
  local reserved = string.sub(current, 1, 2) == 'r:'
  if reserved and tonumber(string.sub(current, 3)) < now + tonumber(reserve_ms) then
    redis.call('HSET', live_key, name, 'r:' .. until_text)
  end
  return {'', 0, 0}
end
local count = 0
local entries = redis.call('HGETALL', live_key)
for i = 1, #entries, 2 do
  local value = entries[i + 1]
  if string.sub(value, 1, 2) == 'r:' and tonumber(string.sub(value, 3)) <= now then
    redis.call('HDEL', live_key, entries[i])
  else
    count = count + 1
  end
end
if count >= tonumber(max_rooms) then return {'max_rooms', count, 0} end
redis.call('HSET', live_key, name, 'r:' .. until_text)
redis.call('PEXPIRE', live_key, retention)
return {'', count, 1}
