-- Deletes KEYS[1] if holder ARGV[1] still has it: a lease is only ever released by its holder.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
