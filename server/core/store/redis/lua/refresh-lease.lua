-- Extends KEYS[1] to ARGV[2] ms if holder ARGV[1] still has it. Returns 1, or 0 when it was lost.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
