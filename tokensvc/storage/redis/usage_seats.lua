-- How many identities other than `identity` hold a seat in a room name.
local function seated_others(seats_key, identity)
  local seen, count = {}, 0
  for _, value in ipairs(redis.call('HVALS', seats_key)) do
    local who = string.sub(value, string.find(value, '|', 1, true) + 1)
    if who ~= identity and not seen[who] then seen[who] = true; count = count + 1 end
  end
  return count
end
-- The key of a quota record of one tenant's room name (the tenant's length first: no two
-- (tenant, name) pairs share a key).
local function quota_key(prefix, kind, tenant, name)
  return prefix .. 'quota:' .. kind .. ':' .. #tenant .. ':' .. tenant .. ':' .. name
end
-- Whether the tenant has a room name in use at `now`: a live life, or a reservation running
-- (its value is its end on the storage's clock; it also expires with it).
local function in_use(prefix, tenant, name, now)
  if redis.call('EXISTS', quota_key(prefix, 'live', tenant, name)) == 1 then return true end
  local until_ms = redis.call('GET', quota_key(prefix, 'reserved', tenant, name))
  return until_ms ~= false and tonumber(until_ms) > now
end
-- Reserve a tenant's room name until `now` + `reserve_ms` (never shortened).
local function reserve(prefix, tenant, name, now, reserve_ms)
  local key = quota_key(prefix, 'reserved', tenant, name)
  local until_ms = now + tonumber(reserve_ms)
  local current = redis.call('GET', key)
  if current == false or tonumber(current) < until_ms then
    redis.call('SET', key, string.format('%d', until_ms), 'PX', reserve_ms)
  end
end
