-- What Redis says of itself that tells whether it may have forgotten writes: its run id (a new
-- one after every restart or failover), the keys it evicted since it started, its eviction
-- policy, whether it loaded an append-only file, and whether it was a promoted replica.
local function storage_facts(sections)
  local info = redis.call('INFO', unpack(sections))
  return {
    run_id = string.match(info, 'run_id:(%x+)') or '',
    evicted = tonumber(string.match(info, 'evicted_keys:(%d+)') or '0'),
    policy = string.match(info, 'maxmemory_policy:([%w%-]+)') or '',
    aof = string.match(info, 'aof_enabled:(%d)') or '0',
    promoted = (string.match(info, 'second_repl_offset:(%-?%d+)') or '-1') ~= '-1',
  }
end
