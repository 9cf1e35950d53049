-- Saves a running reply's text so far as its draft: created at the next position on the first
-- call, its text replaced after that; nothing once the reply has its final message.
-- KEYS: as history-append.lua. ARGV: the reply id, the text, the draft's JSON (for a new draft),
-- the keys' TTL in ms (0: none).
-- Returns 1 when it created the draft (the session was touched), 0 otherwise.
local known = redis.call('hget', KEYS[2], ARGV[1])
if known then
  if string.sub(known, 1, 1) == 'f' then return 0 end
  local seq = tonumber(string.sub(known, 3))
  local old = redis.call('zrangebyscore', KEYS[1], seq, seq)[1]
  if not old then return 0 end
  local json = string.match(old, '^%d+|.|[^|]*|(.*)$')
  local message = cjson.decode(json)
  message.content = ARGV[2]
  redis.call('zremrangebyscore', KEYS[1], seq, seq)
  redis.call('zadd', KEYS[1], seq, seq .. '|d|' .. ARGV[1] .. '|' .. cjson.encode(message))
  return 0
end
local seq = redis.call('incr', KEYS[3])
redis.call('zadd', KEYS[1], seq, seq .. '|d|' .. ARGV[1] .. '|' .. ARGV[3])
redis.call('hset', KEYS[2], ARGV[1], 'd:' .. seq)
local ttl = tonumber(ARGV[4])
if ttl > 0 then for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl) end end
return 1
