-- Admits a session into its owner's set of sessions (a sorted set: session key -> last turn's
-- start, epoch ms), unless the session is not in it and the owner holds `limit` sessions already.
-- KEYS: the owner's set. ARGV: the session key, now, the limit (0: none), the sessions' idle TTL
-- in ms (0: none).
-- Returns 1 when the session was in the set, 2 when it was added, 0 when refused.
-- Members last touched a TTL ago are sessions whose keys expired by themselves: dropped first.
local now, limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local known = redis.call('zscore', KEYS[1], ARGV[1])
if not known and limit > 0 then
  if ttl > 0 then redis.call('zremrangebyscore', KEYS[1], '-inf', '(' .. (now - ttl)) end
  if redis.call('zcard', KEYS[1]) >= limit then return 0 end
end
redis.call('zadd', KEYS[1], now, ARGV[1])
if ttl > 0 then redis.call('pexpire', KEYS[1], ttl) end
if known then return 1 end
return 2
