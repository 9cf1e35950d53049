-- Slots are members of a sorted set scored by their expiry (ms); expired ones are dropped first.
-- KEYS[1]: the set. ARGV: now, member, limit, the member's expiry, the set's TTL.
-- Returns 1 when the member has a slot afterwards, 0 when all `limit` slots are taken.
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zscore', KEYS[1], ARGV[2]) or redis.call('zcard', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('zadd', KEYS[1], ARGV[4], ARGV[2])
  redis.call('pexpire', KEYS[1], ARGV[5])
  return 1
end
return 0
