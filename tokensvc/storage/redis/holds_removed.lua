local until_removed = redis.call('HGET', KEYS[1], ARGV[1])
if until_removed and tonumber(until_removed) > clock(ARGV[2]) then return 1 end
return 0
