-- Generation KEYS[1] settles its outcome: returns 0 when a cancel came first (it ends as
-- cancelled), else marks it settled for ARGV[1] ms (later cancels answer false) and returns 1.
if redis.call('get', KEYS[1]) == 'c' then return 0 end
redis.call('set', KEYS[1], 's', 'PX', ARGV[1])
return 1
