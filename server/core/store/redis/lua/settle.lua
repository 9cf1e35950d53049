-- Generation KEYS[1] settles its outcome: returns 0 when a cancel came first (it ends as
-- cancelled; the cancel's mark, made to last as long as a reply may run, is kept for ARGV[1] ms
-- from now like a settled one), else marks it settled for ARGV[1] ms (later cancels answer false)
-- and returns 1.
if redis.call('get', KEYS[1]) == 'c' then
  redis.call('pexpire', KEYS[1], ARGV[1])
  return 0
end
redis.call('set', KEYS[1], 's', 'PX', ARGV[1])
return 1
