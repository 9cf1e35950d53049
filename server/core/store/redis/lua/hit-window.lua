-- Counts a hit in the fixed window KEYS[1] of ARGV[1] ms: the first hit starts the window's expiry.
-- Returns the count so far and the window's remaining time (ms).
local n = redis.call('incr', KEYS[1])
if n == 1 then redis.call('pexpire', KEYS[1], ARGV[1]) end
return {n, redis.call('pttl', KEYS[1])}
