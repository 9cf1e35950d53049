-- Appends a batch of events to their generations' logs (Redis Streams, entry ids 0-<seq>).
-- KEYS: one log key per event. ARGV: the id and JSON of each event, then the running log's TTL (ms).
-- Returns, per event, 1 when added or 0 when an entry with that id is already there.
-- A log gets its TTL with event 1, so that one abandoned by a dead instance cannot stay forever.
local added = {}
for i = 1, #KEYS do
  local id = ARGV[2 * i - 1]
  local reply = redis.pcall('xadd', KEYS[i], id, 'e', ARGV[2 * i])
  if type(reply) == 'table' and reply.err then
    if not string.find(reply.err, 'equal or smaller', 1, true) then return redis.error_reply(reply.err) end
    added[i] = 0
  else
    added[i] = 1
    if id == '0-1' then redis.call('pexpire', KEYS[i], ARGV[#ARGV]) end
  end
end
return added
