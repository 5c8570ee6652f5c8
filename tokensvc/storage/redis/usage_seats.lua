-- How many identities other than `identity` hold a seat in a room name.
local function seated_others(seats_key, identity)
  local seen, count = {}, 0
  for _, value in ipairs(redis.call('HVALS', seats_key)) do
    local who = string.sub(value, string.find(value, '|', 1, true) + 1)
    if who ~= identity and not seen[who] then seen[who] = true; count = count + 1 end
  end
  return count
end
