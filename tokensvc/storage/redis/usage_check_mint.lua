-- ARGV: tenant, name, identity, max_rooms, max_participants, reserve_ms, prefix, shift, then
-- the tenant's other names.
local tenant, name, identity, max_rooms, max_participants, reserve_ms, prefix, shift =
  unpack(ARGV, 1, 8)
local now = clock(shift)
if max_participants ~= '' then
  local others = seated_others(quota_key(prefix, 'seats', tenant, name), identity)
  if others >= tonumber(max_participants) then return {'max_participants', others, 0} end
end
if max_rooms == '' then return {'', 0, 0} end
if in_use(prefix, tenant, name, now) then
  if redis.call('EXISTS', quota_key(prefix, 'reserved', tenant, name)) == 1 then
    reserve(prefix, tenant, name, now, reserve_ms)
  end
  return {'', 0, 0}
end
local count = 0
for i = 9, #ARGV do
  if ARGV[i] ~= name and in_use(prefix, tenant, ARGV[i], now) then count = count + 1 end
end
if count >= tonumber(max_rooms) then return {'max_rooms', count, 0} end
reserve(prefix, tenant, name, now, reserve_ms)
return {'', count, 1}
