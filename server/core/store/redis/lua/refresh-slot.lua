-- Extends member ARGV[1]'s slot in KEYS[1] to expire at ARGV[2] (ms), and the set's TTL to ARGV[3].
-- Returns 1, or 0 when the member no longer has a slot.
if not redis.call('zscore', KEYS[1], ARGV[1]) then return 0 end
redis.call('zadd', KEYS[1], 'XX', ARGV[2], ARGV[1])
redis.call('pexpire', KEYS[1], ARGV[3])
return 1
