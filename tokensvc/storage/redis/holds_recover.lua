local epoch_key, recovering_key = unpack(KEYS)
local known_epoch, new_epoch, quarantine_ms, shift = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local epoch = redis.call('GET', epoch_key)
if not epoch then
  redis.call('SET', epoch_key, new_epoch)
  epoch = new_epoch
end
local lost = '0'
if known_epoch ~= '' and epoch ~= known_epoch then
  lost = '1'
  local recovering_until = string.format('%d', clock(shift) + quarantine_ms)
  redis.call('SET', recovering_key, recovering_until, 'NX', 'PX', quarantine_ms)
end
return {epoch, lost}
