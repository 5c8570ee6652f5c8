-- Judge, from what the store itself holds, whether it kept every acknowledged write since the
-- record was born, record what a later process needs to judge again, and on a loss start (or
-- extend) the quarantine: one grace from now. Mode 'init' births a new deployment's record.
local continuity_key, recovering_key, old_epoch_key = unpack(KEYS)
local new_epoch, grace_ms, shift, aof_always, replicas, mode = ARGV[1], tonumber(ARGV[2]),
      ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local now = clock(shift)
local facts = storage_facts({'server', 'stats', 'memory', 'persistence', 'replication'})
local record = redis.call('HMGET', continuity_key, 'epoch', 'born', 'origin', 'run_id', 'evicted',
                          'aof_always')
local epoch, born, origin, lost = record[1], record[2], record[3], ''
local function birth(kind)
  epoch, born, origin = new_epoch, string.format('%d', now), kind
  redis.call('DEL', continuity_key)
  redis.call('HSET', continuity_key, 'epoch', epoch, 'born', born, 'origin', origin)
end
if mode == 'init' then
  birth('init')
  redis.call('DEL', recovering_key, old_epoch_key)
elseif not epoch then
  local old = redis.call('GET', old_epoch_key)
  if old then  -- a record kept by an earlier version: adopted as it is
    birth('upgrade')
    epoch = old
    redis.call('HSET', continuity_key, 'epoch', epoch)
    redis.call('DEL', old_epoch_key)
  else  -- never initialised, flushed, restarted empty, or the record itself evicted
    lost = 'missing'
    birth('loss')
  end
else
  if record[4] ~= facts.run_id then
    if facts.promoted then
      if replicas < 1 then lost = 'failover' end
    elseif not (record[6] == '1' and facts.aof == '1') then
      lost = 'restart'
    end
  elseif facts.evicted > tonumber(record[5] or '0') then
    lost = 'evicted'
  end
end
redis.call('HSET', continuity_key, 'run_id', facts.run_id, 'evicted',
           string.format('%d', facts.evicted), 'aof_always', aof_always, 'checked',
           string.format('%d', now))
local left = 0
if lost ~= '' then
  redis.call('HSET', continuity_key, 'lost', lost, 'lost_at', string.format('%d', now))
  local till = now + grace_ms
  if tonumber(redis.call('GET', recovering_key) or '0') < till then
    redis.call('SET', recovering_key, string.format('%d', till), 'PX', grace_ms)
  end
end
local recovering = tonumber(redis.call('GET', recovering_key) or '0')
if recovering > now then left = recovering - now end
return {lost, facts.policy, epoch, born, origin, string.format('%d', left)}
