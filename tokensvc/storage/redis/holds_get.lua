local found = redis.call('HMGET', KEYS[1], 'holder', 'until', 'gone', 'pending')
return {found[1] or '', found[2] or '0', found[3] or '0', found[4] or '0',
        string.format('%d', clock(ARGV[1]))}
