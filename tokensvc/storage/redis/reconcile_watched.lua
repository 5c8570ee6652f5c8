return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%d', clock(ARGV[1])), '+inf')
