-- Generation KEYS[1] settles its outcome, by its owner (ARGV[2] 's') or by an instance that ends it
-- as an orphan ('o'). Returns 0 when a cancel came first (it ends as cancelled; the cancel's mark,
-- made to last as long as a reply may run, is kept for ARGV[1] ms from now like a settled one); 2
-- to its owner when an orphan's ending came first (the reply is not the owner's any more); else
-- marks it settled (later cancels answer false) and returns 1. A settled mark lasts ARGV[1] ms, an
-- orphan's ending ARGV[3] ms (as long as its owner may still wake and settle).
local mark = redis.call('get', KEYS[1])
if mark == 'c' then
  redis.call('pexpire', KEYS[1], ARGV[1])
  return 0
end
if mark == 'o' then
  if ARGV[2] == 'o' then return 1 end
  redis.call('pexpire', KEYS[1], ARGV[1])
  return 2
end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
