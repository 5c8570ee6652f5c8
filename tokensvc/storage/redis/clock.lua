-- The storage's clock: Redis's TIME in ms, moved by the store's shift (tests).
local function clock(shift)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(shift)
end
