-- Claim an order for the dead-letter queue, unless it was counted, in one atomic step.
--
-- Once claimed, the aggregate script never counts the order (it checks the claim first), and once
-- counted, no claim is made: an order ends counted or dead-lettered, never both, whichever copy of
-- its message gets where first. The claim remembers why, so a later copy (a redelivery after a
-- crash) publishes the same letter, and whether the DLQ acknowledged it, so it is not published twice.
--
-- KEYS[1]  the order's seen marker (set by aggregate.lua when it counts the order)
-- KEYS[2]  the order's claim: a hash of state ("claimed" or "published"), class, message
-- ARGV[1]  TTL in seconds (the dedupe window)
-- KEYS[3]  the shard's layout stamp (see aggregate.lua); ARGV[4] the number of shards the caller routes by
-- ARGV[2]  error class, ARGV[3] error message (kept by the first claim only)
--
-- Returns {state, class, message}: state "counted" (nothing claimed), "claimed" or "published".
--
-- Every outcome writes (a TTL refreshed at least), so the WAIT sent after it (worker/aggregate.py)
-- proves that what it found is on the replicas too, whichever copy of the message wrote it first.

-- A claim made in a shard the order no longer maps to would not stop the count in its new shard.
if KEYS[3] and (redis.call('GET', KEYS[3]) or '1') ~= ARGV[4] then
    return redis.error_reply('STALELAYOUT shard ' .. KEYS[3] .. ' is laid out for '
        .. (redis.call('GET', KEYS[3]) or '1') .. ' shards, the writer for ' .. ARGV[4])
end

-- EXISTS before EXPIRE: a script's first write is where Redis checks maxmemory (see aggregate.lua).
if redis.call('EXISTS', KEYS[1]) == 1 then
    redis.call('EXPIRE', KEYS[1], ARGV[1])
    return {'counted', '', ''}
end
local current = redis.call('HMGET', KEYS[2], 'state', 'class', 'message')
if current[1] then
    redis.call('EXPIRE', KEYS[2], ARGV[1])
    return current
end
redis.call('HSET', KEYS[2], 'state', 'claimed', 'class', ARGV[2], 'message', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return {'claimed', ARGV[2], ARGV[3]}
