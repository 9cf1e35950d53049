-- Appends a batch of events to their generations' logs (Redis Streams, entry ids 0-<seq>), in
-- order and without holes: an event is added only right after the log's last one, and never after
-- a terminal event (another instance may have ended the reply).
-- KEYS: one log key per event. ARGV: per event its position, its JSON, its kind ('d' for a
-- delta, 't' for a terminal event) and its deadline (epoch ms, 0 for none: an append its writer
-- gave up on, run late by a Redis that stalled, must not add to the reply); then the running log's
-- TTL (ms), set with event 1, so that a log abandoned by a dead instance cannot stay forever; then
-- '1' to announce each log's new last position on the sharded channel named like the log (a
-- cluster's listeners wait on it), else '0'.
-- Returns per event: 1 added, 0 duplicate (the position is taken), 2 gap, 3 ended, 4 expired;
-- then Redis's clock (epoch ms), by which the caller learns how far its own is from it.
local results = {}
local ttl = ARGV[#ARGV - 1]
local announce = ARGV[#ARGV] == '1'
local added = {}
local time = redis.call('time')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for i = 1, #KEYS do
  local seq = tonumber(ARGV[4 * i - 3])
  local deadline = tonumber(ARGV[4 * i])
  local last = redis.call('xrevrange', KEYS[i], '+', '-', 'COUNT', 1)[1]
  local lastSeq = 0
  local ended = false
  if last then
    lastSeq = tonumber(string.sub(last[1], 3))
    ended = last[2][4] == 't'
  end
  if ended and seq >= lastSeq then
    results[i] = 3
  elseif seq <= lastSeq then
    results[i] = 0
  elseif seq ~= lastSeq + 1 then
    results[i] = 2
  elseif deadline > 0 and now > deadline then
    results[i] = 4
  else
    redis.call('xadd', KEYS[i], '0-' .. seq, 'e', ARGV[4 * i - 2], 'k', ARGV[4 * i - 1])
    if seq == 1 then redis.call('pexpire', KEYS[i], ttl) end
    results[i] = 1
    added[KEYS[i]] = seq
  end
end
if announce then
  for key, seq in pairs(added) do redis.call('spublish', key, seq) end
end
results[#KEYS + 1] = now
return results
