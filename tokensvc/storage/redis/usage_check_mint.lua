-- ARGV: tenant, name, identity, max_rooms, max_participants, reserve_ms, prefix, shift, then
-- the tenant's other names (the record's own list of them is read here too).
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
-- The tenant's names: those given, and those the record holds for it now (read here, in the
-- same atomic step, so that two instances racing for two new names each see the other's).
local names = {}
for i = 9, #ARGV do names[ARGV[i]] = true end
for _, held in ipairs(redis.call('SMEMBERS', prefix .. 'names:' .. tenant)) do names[held] = true end
local count = 0
for other in pairs(names) do
  if other ~= name and in_use(prefix, tenant, other, now) then count = count + 1 end
end
if count >= tonumber(max_rooms) then return {'max_rooms', count, 0} end
reserve(prefix, tenant, name, now, reserve_ms)
return {'', count, 1}
