-- KEYS: none (every key is named from the prefix).
-- ARGV: the most to claim, the lease, the endpoints' concurrency, the key prefix, the clock's
-- shift, then the tenants to skip.
local limit, lease_ms, concurrency, prefix, shift = tonumber(ARGV[1]), tonumber(ARGV[2]),
                                                    ARGV[3], ARGV[4], ARGV[5]
local now = clock(shift)
local skip, skipped = {}, #ARGV - 5
for i = 6, #ARGV do skip[ARGV[i]] = true end
local claimed = {}
local progress = true
while #claimed < limit and progress do
  progress = false
  local tenants = redis.call('ZRANGEBYSCORE', prefix .. 'tq', '-inf', now, 'LIMIT', 0,
                             limit - #claimed + skipped)
  for _, tenant in ipairs(tenants) do
    if #claimed >= limit then break end
    if not skip[tenant] then
      local found = redis.call('ZRANGEBYSCORE', prefix .. 'eq:' .. tenant, '-inf', now,
                               'LIMIT', 0, 1)
      local served = nil
      if #found == 1 then
        local endpoint_id = found[1]
        local queue = prefix .. 'q:' .. endpoint_id
        local head = redis.call('ZRANGE', queue, 0, 0, 'WITHSCORES')
        if #head == 2 and tonumber(head[2]) <= now then
          local id = head[1]
          local delivery_key = prefix .. 'd:' .. id
          redis.call('ZREM', queue, id)
          progress = true
          local d = redis.call('HMGET', delivery_key, 'status', 'body', 'attempts')
          if d[1] == 'pending' then
            local lease = now + lease_ms
            redis.call('ZADD', prefix .. 'leases', lease, id)
            redis.call('ZADD', prefix .. 'run:' .. endpoint_id, lease, id)
            redis.call('HSET', delivery_key, 'lease_until', string.format('%d', lease))
            local e = redis.call('HMGET', prefix .. 'ep:' .. endpoint_id, 'url', 'secret',
                                 'previous_secret', 'previous_until', 'failures')
            local previous = ''
            if (tonumber(e[4]) or 0) > now then previous = e[3] end
            claimed[#claimed + 1] = {id, tenant, endpoint_id, e[1] or '', e[2] or '', previous,
                                     d[2], d[3] or '0', e[5] or '0'}
            served = now
          end
        end
        wh_endpoint(prefix, endpoint_id, tenant, concurrency, served)
      end
      wh_tenant(prefix, tenant, served)
    end
  end
end
return claimed
