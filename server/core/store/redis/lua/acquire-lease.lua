-- Takes KEYS[1] for holder ARGV[1] for ARGV[2] ms, unless another holder has it.
-- Returns 1 when held by ARGV[1] afterwards, 0 otherwise.
local holder = redis.call('get', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
