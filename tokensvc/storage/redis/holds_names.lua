-- A holder's set of names: add one, expiring no sooner than `expire_at`.
local function keep_names(names_key, name, expire_at)
  redis.call('SADD', names_key, name)
  if redis.call('PEXPIRETIME', names_key) < expire_at then
    redis.call('PEXPIREAT', names_key, expire_at)
  end
end
