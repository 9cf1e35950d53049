-- Appends a message to a session's history, or replaces its reply's draft in place.
-- KEYS: the session's messages (sorted set scored by position), its reply ids (hash: id -> 'd:<seq>'
-- for a draft, 'f:<seq>' for a final message) and its position counter.
-- ARGV: the message's JSON, keepLast, the reply id ('' for none), the keys' TTL in ms (0: none),
-- the message's status.
-- Members are '<seq>|<d or f>|<reply id>|<json>' (the position makes equal messages distinct).
-- Returns the message's position.
local replyId = ARGV[3]
local seq
if replyId ~= '' then
  local known = redis.call('hget', KEYS[2], replyId)
  if known then
    seq = tonumber(string.sub(known, 3))
    -- A reply has one final message: a retry changes nothing, except that a complete one replaces
    -- an interrupted one with nothing after it (another process ended the reply for a crash's
    -- while it went on).
    if string.sub(known, 1, 1) == 'f' then
      if ARGV[5] ~= 'complete' then return seq end
      local newest = redis.call('zrevrange', KEYS[1], 0, 0, 'WITHSCORES')
      if tonumber(newest[2]) ~= seq then return seq end
      local stored = string.match(newest[1], '^%d+|.|[^|]*|(.*)$')
      if not stored or cjson.decode(stored).status ~= 'interrupted' then return seq end
    end
    redis.call('zremrangebyscore', KEYS[1], seq, seq)
  end
end
if not seq then seq = redis.call('incr', KEYS[3]) end
redis.call('zadd', KEYS[1], seq, seq .. '|f|' .. replyId .. '|' .. ARGV[1])
if replyId ~= '' then redis.call('hset', KEYS[2], replyId, 'f:' .. seq) end
local keep = tonumber(ARGV[2])
local count = redis.call('zcard', KEYS[1])
if count > keep then
  for _, member in ipairs(redis.call('zrange', KEYS[1], 0, count - keep - 1)) do
    local id = string.match(member, '^%d+|.|([^|]*)|')
    if id and id ~= '' then redis.call('hdel', KEYS[2], id) end
  end
  redis.call('zremrangebyrank', KEYS[1], 0, count - keep - 1)
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then for i = 1, 3 do redis.call('pexpire', KEYS[i], ttl) end end
return seq
