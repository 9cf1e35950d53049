-- Asks generation KEYS[1]'s instance to stop it, unless its outcome is settled: marks it
-- cancelled for ARGV[1] ms and publishes its id ARGV[3] on channel ARGV[2] (unless ARGV[2] is '':
-- on a cluster the caller publishes, the channel being in another slot). Returns 1 when it did, 0
-- when the generation had settled ('s') or was already cancelled ('c').
if redis.call('get', KEYS[1]) then return 0 end
redis.call('set', KEYS[1], 'c', 'PX', ARGV[1])
if ARGV[2] ~= '' then redis.call('publish', ARGV[2], ARGV[3]) end
return 1
